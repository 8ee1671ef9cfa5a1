package otp_test

import (
	"encoding/hex"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"tokend/appliance/otp"
	"tokend/internal/stoken"
)

// stokenCase is one random cross-check case.
type stokenCase struct {
	seed             []byte
	serial           string
	digits, interval int
	pin              string // "" for none
	unix             int64
}

func (c stokenCase) String() string {
	return fmt.Sprintf("seed=%x serial=%s digits=%d interval=%d pin=%q t=%d",
		c.seed, c.serial, c.digits, c.interval, c.pin, c.unix)
}

// TestStokenCrossCheck compares SecurID codes (and AddPIN passcodes) with
// Debian's stoken on random tokens. Each case gets its own token file. Set
// OTP_STOKEN_SEED to replay a run and OTP_STOKEN_CASES to change the count
// (default 1000; 100 with -short).
func TestStokenCrossCheck(t *testing.T) {
	stoken.Require(t)
	rngSeed := time.Now().UnixNano()
	if s := os.Getenv("OTP_STOKEN_SEED"); s != "" {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatalf("OTP_STOKEN_SEED: %v", err)
		}
		rngSeed = v
	}
	n := 1000
	if testing.Short() {
		n = 100
	}
	if s := os.Getenv("OTP_STOKEN_CASES"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 1 {
			t.Fatalf("OTP_STOKEN_CASES: %q", s)
		}
		n = v
	}
	t.Logf("math/rand seed %d (replay with OTP_STOKEN_SEED=%d), %d cases", rngSeed, rngSeed, n)
	cases := randomStokenCases(rand.New(rand.NewSource(rngSeed)), n)

	dir := t.TempDir()
	type result struct {
		got, want string
		err       error
	}
	results := make([]result, len(cases))
	work := make(chan int)
	var wg sync.WaitGroup
	start := time.Now()
	// stoken runs are short-lived processes dominated by exec latency, so
	// more workers than CPUs keeps both cores busy.
	for range 2 * runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				c := cases[i]
				path := filepath.Join(dir, fmt.Sprintf("case%05d.sdtid", i))
				r := &results[i]
				if r.err = stoken.WriteSDTID(path, c.seed, c.serial, c.digits, c.interval); r.err != nil {
					continue
				}
				r.got, r.err = stoken.TokencodeFile(path, c.pin, time.Unix(c.unix, 0))
				_ = os.Remove(path)
			}
		}()
	}
	for i := range cases {
		work <- i
	}
	close(work)
	wg.Wait()
	elapsed := time.Since(start)

	failures, pins := 0, 0
	for i, c := range cases {
		r := results[i]
		if r.err != nil {
			t.Fatalf("case %d (%v): %v", i, c, r.err)
		}
		s, err := otp.NewSecurID(c.seed, c.serial, c.digits, c.interval)
		if err != nil {
			t.Fatalf("case %d (%v): %v", i, c, err)
		}
		want, err := s.Code(time.Unix(c.unix, 0))
		if err != nil {
			t.Fatalf("case %d (%v): %v", i, c, err)
		}
		if c.pin != "" {
			pins++
			if want, err = otp.AddPIN(want, c.pin); err != nil {
				t.Fatalf("case %d (%v): %v", i, c, err)
			}
			// The server side: unfolding stoken's passcode gives our code.
			code, err := otp.RemovePIN(r.got, c.pin)
			if err != nil {
				t.Errorf("case %d (%v): RemovePIN(%q): %v", i, c, r.got, err)
			} else if _, ok, err := otp.Verify(s, code, s.Step(time.Unix(c.unix, 0)), 1); !ok || err != nil {
				t.Errorf("case %d (%v): Verify(RemovePIN(stoken passcode)) = %v, %v", i, c, ok, err)
			}
		}
		if r.got != want {
			failures++
			if failures <= 20 {
				t.Errorf("case %d (%v): stoken %s, otp %s", i, c, r.got, want)
			}
		}
	}
	t.Logf("%d cases (%d with PIN) compared with stoken in %v; %d mismatches", len(cases), pins, elapsed.Round(time.Millisecond), failures)
}

// randomStokenCases draws cases over 1970–2099, both intervals and both
// deployed digit counts; about one in ten serials is shorter than 12 digits
// (both sides left-pad), and about one in four cases carries a PIN no
// longer than the code.
func randomStokenCases(rng *rand.Rand, n int) []stokenCase {
	const maxUnix = 4102444799 // 2099-12-31T23:59:59Z
	cases := make([]stokenCase, n)
	for i := range cases {
		c := &cases[i]
		c.seed = make([]byte, 16)
		rng.Read(c.seed)
		serialLen := 12
		if rng.Intn(10) == 0 {
			serialLen = 1 + rng.Intn(11)
		}
		c.serial = randomDigits(rng, serialLen)
		c.digits = []int{6, 8}[rng.Intn(2)]
		c.interval = []int{30, 60}[rng.Intn(2)]
		c.unix = 1 + rng.Int63n(maxUnix)
		if rng.Intn(4) == 0 {
			c.pin = randomDigits(rng, otp.MinPINLength+rng.Intn(c.digits-otp.MinPINLength+1))
		}
	}
	return cases
}

func randomDigits(rng *rand.Rand, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('0' + rng.Intn(10))
	}
	return string(b)
}

// TestStokenWindow checks a verifier-sized run of consecutive windows
// (current ±10) from Codes against stoken, for both intervals, across chain
// and hour boundaries.
func TestStokenWindow(t *testing.T) {
	stoken.Require(t)
	seed, _ := hex.DecodeString(seedB)
	for _, interval := range []int{30, 60} {
		t.Run(strconv.Itoa(interval)+"s", func(t *testing.T) {
			s, err := otp.NewSecurID(seed, "838999658504", 8, interval)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(t.TempDir(), "w.sdtid")
			if err := stoken.WriteSDTID(path, seed, s.Serial, s.Digits, s.Interval); err != nil {
				t.Fatal(err)
			}
			center := s.Step(time.Unix(1893456000, 0)) // 2030-01-01 00:00 UTC
			got, err := s.Codes(center-10, 21)
			if err != nil {
				t.Fatal(err)
			}
			for i, code := range got {
				// Probe the last second of each step: a stoken/otp
				// disagreement on step edges would show here.
				at := s.StepTime(center - 10 + int64(i)).Add(time.Duration(interval-1) * time.Second)
				want, err := stoken.TokencodeFile(path, "", at)
				if err != nil {
					t.Fatal(err)
				}
				if code != want {
					t.Errorf("step %+d (%v): otp %s, stoken %s", i-10, at, code, want)
				}
			}
		})
	}
}
