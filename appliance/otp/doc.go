// Package otp owns the one-time-password arithmetic of the appliance:
//
//   - RSA SecurID 128-bit AES time-based tokencodes (the algorithm stoken
//     implements; see docs/ctkip.md §9), computed a whole AES chain at a time
//     so a verifier checking many neighbouring windows pays for one chain per
//     four windows;
//   - PIN folding for AddPIN ("PINPad") tokens and its inverse;
//   - OATH HOTP (RFC 4226) and TOTP (RFC 6238, SHA-1/SHA-256/SHA-512);
//   - constant-time code comparison and window verification.
//
// It is pure computation on values passed in: no storage, no clock, no
// policy (window sizes, replay and drift tracking belong to the caller, which
// gets the matching time step back to record). It imports only the standard
// library so it can be reviewed and tested on its own.
//
// Types that hold seeds or keys print and log as "[redacted]".
package otp
