package otp_test

import (
	"encoding/hex"
	"fmt"
	"time"

	"tokend/appliance/otp"
)

// A server checking an AddPIN passcode: remove the PIN, look in ±1 windows,
// keep the returned step to refuse replays.
func ExampleVerify() {
	seed, _ := hex.DecodeString("000102030405060708090a0b0c0d0e0f")
	tok, err := otp.NewSecurID(seed, "123456789", 8, 60)
	if err != nil {
		panic(err)
	}
	now := time.Unix(1700000030, 0)
	code, err := otp.RemovePIN("98489287", "1234") // as typed by the user
	if err != nil {
		panic(err)
	}
	step, ok, err := otp.Verify(tok, code, tok.Step(now), 1)
	fmt.Println(code, ok, err, step-tok.Step(now))
	// Output: 98488053 true <nil> 0
}

func ExampleSecurID_Codes() {
	seed, _ := hex.DecodeString("000102030405060708090a0b0c0d0e0f")
	tok, _ := otp.NewSecurID(seed, "000123456789", 8, 60)
	first := tok.Step(time.Unix(1700000000, 0)) - 1
	codes, _ := tok.Codes(first, 3) // one AES chain: 22:12, 22:13, 22:14 (words 0–2 of §9.3)
	fmt.Println(codes)
	// Output: [18506031 98488053 62564781]
}
