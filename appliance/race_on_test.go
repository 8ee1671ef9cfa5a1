//go:build race

package appliance_test

// raceEnabled is true when the tests run under -race, which makes the
// largest imports too slow to run at full size.
const raceEnabled = true
