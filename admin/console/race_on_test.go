//go:build race

package console_test

// raceEnabled: the race detector's shadow memory is resident too, so
// VmHWM says nothing about tokend's own memory in a -race build.
const raceEnabled = true
