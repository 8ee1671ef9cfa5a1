// Package stoken is a test helper that runs Debian's stoken (0.92) as an
// independent oracle for SecurID tokencodes. It owns the plumbing only:
// writing token files stoken accepts, invoking `stoken tokencode`, and
// skipping or failing tests when the binary is missing. It does not compute
// tokencodes itself, so a test comparing appliance/otp against it compares
// two independent implementations.
//
// Token files are made by handing stoken an .sdtid template whose <Seed> is
// "=" followed by the base64 of the plain seed (docs/ctkip.md §10) and
// letting `stoken export --random --sdtid --template=…` compute the
// encryption and MACs. The tokens are AddPIN tokens, so a PIN can be
// supplied per call ("0000" means none).
//
// Install with: apt-get install -y --no-install-recommends stoken
package stoken
