package slapdtest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Paths of the Debian packages' binaries. Variables would be package-level
// mutable state; these never change.
const (
	slapdBin   = "/usr/sbin/slapd"
	slapaddBin = "/usr/sbin/slapadd"
	schemaDir  = "/etc/ldap/schema"
	moduleDir  = "/usr/lib/ldap"
)

// ldapTools are the ldap-utils client programs the helper runs.
func ldapTools() []string {
	return []string{"ldapsearch", "ldapadd", "ldapmodify", "ldapmodrdn", "ldapdelete"}
}

// Require skips the test when slapd or ldap-utils are missing, or fails it
// under CI=true, where a missing fixture must never turn into a silent skip.
func Require(tb testing.TB) {
	tb.Helper()
	var missing []string
	for _, p := range []string{slapdBin, slapaddBin} {
		if _, err := os.Stat(p); err != nil {
			missing = append(missing, p)
		}
	}
	for _, p := range ldapTools() {
		if _, err := exec.LookPath(p); err != nil {
			missing = append(missing, p)
		}
	}
	if len(missing) == 0 {
		return
	}
	msg := fmt.Sprintf("slapdtest: missing %s; run `apt-get install slapd ldap-utils` "+
		"(DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends slapd ldap-utils)",
		strings.Join(missing, ", "))
	if os.Getenv("CI") == "true" {
		tb.Fatal(msg)
	}
	tb.Skip(msg)
}

// Options select the directory content and listeners.
type Options struct {
	// Users is the number of users uid=user1..userN loaded with slapadd.
	Users int
	// AD loads msuser.schema and gives users AD-shaped attributes
	// (objectClass user, sAMAccountName, userPrincipalName, objectGUID,
	// userAccountControl 512, or 514 = disabled for every 10th user).
	AD bool
	// TLS makes a self-signed certificate with openssl, enables StartTLS on
	// the ldap:// port and listens on ldaps:// as well.
	TLS bool
	// Suffix defaults to dc=example,dc=org; RootPW (also the reader's
	// password) defaults to "secret".
	Suffix string
	RootPW string
}

// UserPassword is every generated user's userPassword.
const UserPassword = "password"

// Server is a running throwaway slapd.
type Server struct {
	// URL is ldap://127.0.0.1:PORT; LDAPSURL is ldaps://127.0.0.1:TLSPORT
	// and CAFile the PEM certificate to trust (TLS only).
	URL      string
	LDAPSURL string
	CAFile   string

	Suffix, PeopleDN         string
	AdminDN, AdminPassword   string
	ReaderDN, ReaderPassword string
	Dir                      string
	opts                     Options
	urls                     string
	mu                       sync.Mutex
	cmd                      *exec.Cmd
	exited                   chan struct{}
}

// Start creates, loads and starts a slapd; it is stopped and removed in
// tb.Cleanup. It calls Require first.
func Start(tb testing.TB, opts Options) *Server {
	tb.Helper()
	Require(tb)
	if opts.Suffix == "" {
		opts.Suffix = "dc=example,dc=org"
	}
	if opts.RootPW == "" {
		opts.RootPW = "secret"
	}
	dir := tb.TempDir()
	s := &Server{
		Suffix:         opts.Suffix,
		PeopleDN:       "ou=people," + opts.Suffix,
		AdminDN:        "cn=admin," + opts.Suffix,
		AdminPassword:  opts.RootPW,
		ReaderDN:       "cn=reader," + opts.Suffix,
		ReaderPassword: opts.RootPW,
		Dir:            dir,
		opts:           opts,
	}
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o700); err != nil {
		tb.Fatal(err)
	}
	if opts.TLS {
		s.makeCert(tb)
	}
	if err := os.WriteFile(filepath.Join(dir, "slapd.conf"), []byte(s.conf()), 0o600); err != nil {
		tb.Fatal(err)
	}
	ldif := filepath.Join(dir, "base.ldif")
	if err := s.writeBaseLDIF(ldif); err != nil {
		tb.Fatal(err)
	}
	// -q: quick mode (no consistency checks); -w: write contextCSN so
	// syncprov hands out cookies from the start.
	out, err := exec.Command(slapaddBin, "-q", "-w", "-f", filepath.Join(dir, "slapd.conf"), "-l", ldif).CombinedOutput()
	if err != nil {
		tb.Fatalf("slapdtest: slapadd: %v\n%s", err, out)
	}
	_ = os.Remove(ldif)

	tb.Cleanup(s.Stop)
	var lastErr error
	for range 20 {
		port, tlsPort := freePort(tb), 0
		s.URL = fmt.Sprintf("ldap://127.0.0.1:%d", port)
		s.urls = s.URL + "/"
		if opts.TLS {
			tlsPort = freePort(tb)
			s.LDAPSURL = fmt.Sprintf("ldaps://127.0.0.1:%d", tlsPort)
			s.urls += " " + s.LDAPSURL + "/"
		}
		if lastErr = s.launch(); lastErr == nil {
			return s
		}
	}
	tb.Fatalf("slapdtest: could not start slapd: %v", lastErr)
	return nil
}

// freePort asks the kernel for a free port; slapd binds it right after (a
// lost race shows up as slapd exiting, and Start retries).
func freePort(tb testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func (s *Server) launch() error {
	logf, err := os.OpenFile(filepath.Join(s.Dir, "slapd.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	// -d 0: stay in the foreground as our child (the script lets it
	// daemonise), so Kill/Stop can wait for it.
	cmd := exec.Command(slapdBin, "-h", s.urls, "-f", filepath.Join(s.Dir, "slapd.conf"), "-d", "0")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(exited)
	}()
	s.mu.Lock()
	s.cmd, s.exited = cmd, exited
	s.mu.Unlock()

	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return fmt.Errorf("slapd exited at start: %s", s.logTail())
		default:
		}
		if s.ready() {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.Kill()
	return fmt.Errorf("slapd did not answer on %s: %s", s.URL, s.logTail())
}

func (s *Server) ready() bool {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return exec.CommandContext(ctx, "ldapsearch", "-x", "-LLL", "-o", "nettimeout=1",
		"-H", s.URL, "-s", "base", "-b", "", "1.1").Run() == nil
}

func (s *Server) logTail() string {
	b, _ := os.ReadFile(filepath.Join(s.Dir, "slapd.log"))
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// Pid is the slapd process id, or 0 when it is not running.
func (s *Server) Pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil || s.cmd.Process == nil {
		return 0
	}
	select {
	case <-s.exited:
		return 0
	default:
		return s.cmd.Process.Pid
	}
}

func (s *Server) signal(sig syscall.Signal, wait time.Duration) bool {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.mu.Unlock()
	if cmd == nil {
		return true
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-exited:
		return true
	case <-time.After(wait):
		return false
	}
}

// Kill stops slapd abruptly (SIGKILL), as an outage would. The data stays;
// Restart brings the server back on the same ports.
func (s *Server) Kill() {
	s.signal(syscall.SIGKILL, 10*time.Second)
}

// Stop shuts slapd down (SIGTERM, then SIGKILL). Safe to call repeatedly.
func (s *Server) Stop() {
	if !s.signal(syscall.SIGTERM, 5*time.Second) {
		s.Kill()
	}
}

// Restart stops slapd if it runs and starts it again with the same data
// and ports. Note that syncprov's in-memory session log is lost.
func (s *Server) Restart(tb testing.TB) {
	tb.Helper()
	s.Stop()
	var err error
	for range 50 { // the old listener may linger for a moment
		if err = s.launch(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	tb.Fatalf("slapdtest: restart: %v", err)
}

func (s *Server) conf() string {
	var b strings.Builder
	for _, sc := range []string{"core", "cosine", "nis", "inetorgperson"} {
		fmt.Fprintf(&b, "include %s/%s.schema\n", schemaDir, sc)
	}
	if s.opts.AD {
		fmt.Fprintf(&b, "include %s/msuser.schema\n", schemaDir)
	}
	fmt.Fprintf(&b, `pidfile %[1]s/slapd.pid
argsfile %[1]s/slapd.args
modulepath %[2]s
moduleload back_mdb
moduleload syncprov
# a test fixture: no size/time limits for anybody
sizelimit unlimited
timelimit unlimited

database mdb
suffix "%[3]s"
rootdn "%[4]s"
rootpw %[5]s
directory %[1]s/data
# sparse file; the mdb default (10 MiB) is too small for 100k entries
maxsize 4294967296
# tests do not need durability
dbnosync
index objectClass eq
index uid,mail,cn,member eq
index entryUUID,entryCSN eq
access to attrs=userPassword by self write by anonymous auth by * none
access to * by * read
overlay syncprov
syncprov-checkpoint 100 5
syncprov-sessionlog 10000
`, s.Dir, moduleDir, s.Suffix, s.AdminDN, s.AdminPassword)
	if s.opts.TLS {
		fmt.Fprintf(&b, "TLSCACertificateFile %[1]s/tls/cert.pem\nTLSCertificateFile %[1]s/tls/cert.pem\nTLSCertificateKeyFile %[1]s/tls/key.pem\n", s.Dir)
	}
	return b.String()
}

func (s *Server) makeCert(tb testing.TB) {
	tb.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		tb.Skip("slapdtest: TLS needs openssl")
	}
	tlsDir := filepath.Join(s.Dir, "tls")
	if err := os.MkdirAll(tlsDir, 0o700); err != nil {
		tb.Fatal(err)
	}
	out, err := exec.Command("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "7",
		"-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
		"-keyout", filepath.Join(tlsDir, "key.pem"), "-out", filepath.Join(tlsDir, "cert.pem")).CombinedOutput()
	if err != nil {
		tb.Fatalf("slapdtest: openssl: %v\n%s", err, out)
	}
	s.CAFile = filepath.Join(tlsDir, "cert.pem")
}

// UserDN is the DN of generated user i.
func (s *Server) UserDN(i int) string {
	return fmt.Sprintf("uid=user%d,%s", i, s.PeopleDN)
}

// GUID is the raw 16-byte objectGUID of generated user i (AD mode): the
// integer i little-endian in the first four bytes, then a fixed tail.
func GUID(i int) []byte {
	b := []byte{0, 0, 0, 0, 0x22, 0x11, 0x44, 0x33, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc}
	binary.LittleEndian.PutUint32(b, uint32(i))
	return b
}

// UserLDIF is the LDIF of generated users first..first+n-1, in the same
// shape as the fixture script (plus objectGUID in AD mode).
func (s *Server) UserLDIF(first, n int) string {
	var b bytes.Buffer
	s.writeUsers(&b, first, n)
	return b.String()
}

func (s *Server) writeUsers(w io.Writer, first, n int) {
	for i := first; i < first+n; i++ {
		fmt.Fprintf(w, "dn: uid=user%d,%s\n", i, s.PeopleDN)
		if s.opts.AD {
			io.WriteString(w, "objectClass: user\nobjectClass: extensibleObject\n")
		} else {
			io.WriteString(w, "objectClass: inetOrgPerson\n")
		}
		fmt.Fprintf(w, "uid: user%d\ncn: User %d\nsn: %d\ngivenName: User\n", i, i, i)
		fmt.Fprintf(w, "displayName: Test User %d\nmail: user%d@example.org\n", i, i)
		fmt.Fprintf(w, "employeeNumber: %d\nuserPassword: %s\n", i, UserPassword)
		if s.opts.AD {
			fmt.Fprintf(w, "instanceType: 4\nobjectCategory: CN=Person,CN=Schema,CN=Configuration,%s\n", s.Suffix)
			io.WriteString(w, "nTSecurityDescriptor:: AQAEgA==\n")
			fmt.Fprintf(w, "sAMAccountName: user%d\nuserPrincipalName: user%d@example.org\n", i, i)
			uac := 512
			if i%10 == 0 {
				uac = 514
			}
			fmt.Fprintf(w, "userAccountControl: %d\n", uac)
			fmt.Fprintf(w, "objectGUID:: %s\n", base64.StdEncoding.EncodeToString(GUID(i)))
		}
		io.WriteString(w, "\n")
	}
}

func (s *Server) writeBaseLDIF(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	top := strings.TrimPrefix(strings.SplitN(s.Suffix, ",", 2)[0], "dc=")
	fmt.Fprintf(w, `dn: %[1]s
objectClass: dcObject
objectClass: organization
dc: %[2]s
o: %[2]s

dn: %[3]s
objectClass: organizationalUnit
ou: people

dn: ou=groups,%[1]s
objectClass: organizationalUnit
ou: groups

dn: %[4]s
objectClass: organizationalRole
objectClass: simpleSecurityObject
cn: reader
userPassword: %[5]s

`, s.Suffix, top, s.PeopleDN, s.ReaderDN, s.ReaderPassword)
	s.writeUsers(w, 1, s.opts.Users)
	if m := min(s.opts.Users, 100); m >= 1 {
		fmt.Fprintf(w, "dn: cn=otp-users,ou=groups,%s\nobjectClass: groupOfNames\ncn: otp-users\n", s.Suffix)
		for i := 1; i <= m; i++ {
			fmt.Fprintf(w, "member: %s\n", s.UserDN(i))
		}
		io.WriteString(w, "\n")
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// run executes an ldap-utils client bound as the rootdn, LDIF on stdin.
func (s *Server) run(tb testing.TB, stdin string, tool string, args ...string) {
	tb.Helper()
	full := append([]string{"-x", "-H", s.URL, "-D", s.AdminDN, "-w", s.AdminPassword}, args...)
	cmd := exec.Command(tool, full...)
	cmd.Stdin = strings.NewReader(stdin)
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("slapdtest: %s %s: %v\n%s", tool, strings.Join(args, " "), err, out)
	}
}

// Add adds the entries of an LDIF text (ldapadd).
func (s *Server) Add(tb testing.TB, ldif string) {
	tb.Helper()
	s.run(tb, ldif, "ldapadd")
}

// AddUsers adds generated users first..first+n-1 online.
func (s *Server) AddUsers(tb testing.TB, first, n int) {
	tb.Helper()
	s.Add(tb, s.UserLDIF(first, n))
}

// Modify applies an LDIF change text (ldapmodify).
func (s *Server) Modify(tb testing.TB, ldif string) {
	tb.Helper()
	s.run(tb, ldif, "ldapmodify")
}

// Replace sets one attribute of an entry to the given values.
func (s *Server) Replace(tb testing.TB, dn, attr string, values ...string) {
	tb.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "dn: %s\nchangetype: modify\nreplace: %s\n", dn, attr)
	for _, v := range values {
		fmt.Fprintf(&b, "%s: %s\n", attr, v)
	}
	s.Modify(tb, b.String())
}

// Rename gives an entry a new RDN, removing the old RDN value
// (ldapmodrdn -r), as a login rename in a directory does.
func (s *Server) Rename(tb testing.TB, dn, newRDN string) {
	tb.Helper()
	s.run(tb, "", "ldapmodrdn", "-r", dn, newRDN)
}

// Delete removes entries (ldapdelete).
func (s *Server) Delete(tb testing.TB, dns ...string) {
	tb.Helper()
	if len(dns) == 0 {
		return
	}
	s.run(tb, strings.Join(dns, "\n")+"\n", "ldapdelete")
}

// Search runs ldapsearch as the rootdn and returns its LDIF output; handy
// for assertions and for the benchmark's reference timing.
func (s *Server) Search(tb testing.TB, base, filter string, args ...string) string {
	tb.Helper()
	full := append([]string{"-x", "-LLL", "-H", s.URL, "-D", s.AdminDN, "-w", s.AdminPassword, "-b", base, filter}, args...)
	out, err := exec.Command("ldapsearch", full...).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			tb.Fatalf("slapdtest: ldapsearch: %v\n%s", err, ee.Stderr)
		}
		tb.Fatalf("slapdtest: ldapsearch: %v", err)
	}
	return string(out)
}

// Port is the ldap:// port.
func (s *Server) Port() int {
	i := strings.LastIndexByte(s.URL, ':')
	p, _ := strconv.Atoi(s.URL[i+1:])
	return p
}
