package stoken

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Binary is the program looked up in PATH.
const Binary = "stoken"

// InstallHint says what to install when the binary is missing.
const InstallHint = "apt-get install -y --no-install-recommends stoken"

// NoPIN is stoken's spelling of "no PIN" for AddPIN tokens.
const NoPIN = "0000"

// Timeout bounds one stoken invocation. stoken prompts on stdin for a PIN it
// does not like; stdin is empty so it fails instead, but a bound keeps a
// surprise from hanging the test run.
const Timeout = 30 * time.Second

// Path returns the stoken binary found in PATH.
func Path() (string, error) { return exec.LookPath(Binary) }

// Require returns the path of stoken. When it is missing the test fails if
// the environment variable CI is "true" (the cross-check must run there) and
// is skipped otherwise, naming the package to install.
func Require(t testing.TB) string {
	t.Helper()
	p, err := Path()
	if err == nil {
		return p
	}
	msg := fmt.Sprintf("%s not found in PATH (%v); install it with: %s", Binary, err, InstallHint)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// Template returns an .sdtid template for one AddPIN token with a plain seed
// (16 bytes), a serial (decimal, left-padded with 0 to 12 digits), a digit
// count and an interval in seconds. The death date is far in the future so
// arbitrary --use-time values are accepted; --force is passed anyway.
func Template(seed []byte, serial string, digits, interval int) ([]byte, error) {
	if len(seed) != 16 {
		return nil, fmt.Errorf("stoken: seed is %d bytes, want 16", len(seed))
	}
	if serial == "" || len(serial) > 12 || strings.Trim(serial, "0123456789") != "" {
		return nil, fmt.Errorf("stoken: serial %q is not 1 to 12 decimal digits", serial)
	}
	serial = strings.Repeat("0", 12-len(serial)) + serial
	var b bytes.Buffer
	fmt.Fprintf(&b, `<?xml version="1.0"?>
<TKNBatch>
  <TKNHeader>
    <DefBirth>2000/01/01</DefBirth>
    <DefDeath>2037/12/31</DefDeath>
    <DefDigits>%d</DefDigits>
    <DefInterval>%d</DefInterval>
    <DefAddPIN>1</DefAddPIN>
    <DefLocalPIN>0</DefLocalPIN>
  </TKNHeader>
  <TKN>
    <SN>%s</SN>
    <Seed>=%s</Seed>
  </TKN>
  <TKNTrailer>
  </TKNTrailer>
</TKNBatch>
`, digits, interval, serial, base64.StdEncoding.EncodeToString(seed))
	return b.Bytes(), nil
}

// WriteSDTID writes to path an .sdtid file stoken reads as the token
// described (see Template). It runs `stoken export` next to path and
// removes its template afterwards.
func WriteSDTID(path string, seed []byte, serial string, digits, interval int) error {
	tpl, err := Template(seed, serial, digits, interval)
	if err != nil {
		return err
	}
	tplPath := path + ".template.xml"
	if err := os.WriteFile(tplPath, tpl, 0o600); err != nil {
		return err
	}
	defer os.Remove(tplPath)
	out, err := run(filepath.Dir(path), "export", "--random", "--sdtid", "--template="+tplPath)
	if err != nil {
		return err
	}
	return os.WriteFile(path, out, 0o600)
}

// TokencodeFile runs `stoken tokencode` on a token file at Unix time at.
// pin "" means no PIN; otherwise stoken folds it in (AddPIN). It is safe for
// concurrent use and reports errors rather than failing a test, so it can
// be called from worker goroutines.
func TokencodeFile(path, pin string, at time.Time) (string, error) {
	if pin == "" {
		pin = NoPIN
	}
	out, err := run(filepath.Dir(path), "tokencode", "--force", "--file="+path,
		"--pin="+pin, "--use-time="+strconv.FormatInt(at.Unix(), 10))
	if err != nil {
		return "", err
	}
	code := strings.TrimSpace(string(out))
	if code == "" || strings.Trim(code, "0123456789") != "" {
		return "", fmt.Errorf("stoken: unexpected tokencode output %q", out)
	}
	return code, nil
}

// Tokencode returns stoken's tokencode (passcode, if pin is set) for a token
// with the given plain seed, serial, digits and interval at time at. It
// writes a throw-away token file in t.TempDir and fails the test on error.
// For many codes of one token, use WriteSDTID once and TokencodeFile.
func Tokencode(t testing.TB, seed []byte, serial string, digits, interval int, pin string, at time.Time) string {
	t.Helper()
	Require(t)
	path := filepath.Join(t.TempDir(), "token.sdtid")
	if err := WriteSDTID(path, seed, serial, digits, interval); err != nil {
		t.Fatal(err)
	}
	code, err := TokencodeFile(path, pin, at)
	if err != nil {
		t.Fatal(err)
	}
	return code
}

// Run executes stoken with args, HOME and the working directory set to dir
// (see run), and returns its standard output. Tests use it for the
// commands the helpers above do not wrap (issue, import, export, show).
func Run(dir string, args ...string) ([]byte, error) { return run(dir, args...) }

// run executes stoken with HOME pointing at dir, so a developer's own
// ~/.stokenrc (saved token, PIN or password) cannot leak into results, and
// with empty stdin, so prompts fail instead of blocking.
func run(dir string, args ...string) ([]byte, error) {
	p, err := Path()
	if err != nil {
		return nil, fmt.Errorf("stoken: %w (install with: %s)", err, InstallHint)
	}
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, p, args...)
	cmd.Env = append(os.Environ(), "HOME="+dir)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) || ctx.Err() != nil {
			return nil, fmt.Errorf("stoken %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
		}
		return nil, fmt.Errorf("stoken %s: %w", strings.Join(args, " "), err)
	}
	return stdout.Bytes(), nil
}
