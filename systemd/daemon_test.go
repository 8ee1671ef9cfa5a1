package systemd

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestDaemonHonoursUnit runs the real daemon the way tokend.service does
// (Type=notify, the master key as the credential "master-key", the packaged
// /etc/tokend/tokend.yaml, SIGTERM to stop) and checks its side of the
// contract: READY=1 once both listeners accept connections, the first-start
// admin token written 0600 and only its path printed, STOPPING=1 on SIGTERM,
// and exit status 0 within TimeoutStopSec.
func TestDaemonHonoursUnit(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the daemon; skipped with -short")
	}
	tmp := t.TempDir()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	// TOKEND_TEST_BIN checks a given binary (for example the installed
	// /usr/bin/tokend) instead of building ./appliance/cmd/tokend.
	bin := os.Getenv("TOKEND_TEST_BIN")
	if bin == "" {
		goTool := needTool(t, "go")
		bin = filepath.Join(tmp, "tokend")
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		build := exec.CommandContext(ctx, goTool, "build", "-o", bin, "./appliance/cmd/tokend")
		build.Dir = root
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("go build: %v\n%s", err, out)
		}
	}

	// What systemd would prepare: the credential, the state directory and
	// the notification socket.
	creds := filepath.Join(tmp, "credentials")
	data := filepath.Join(tmp, "state")
	for _, d := range []string{creds, data} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(creds, "master-key"), []byte(hex.EncodeToString(key)+"\n"), 0o400); err != nil {
		t.Fatal(err)
	}
	sockPath := filepath.Join(tmp, "notify")
	sock, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sockPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	notes := make(chan string, 16)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := sock.Read(buf)
			if err != nil {
				close(notes)
				return
			}
			notes <- string(buf[:n])
		}
	}()

	adminAddr, ctkipAddr := freePort(t), freePort(t)
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TOKEND_") && !strings.HasPrefix(kv, "NOTIFY_SOCKET=") && !strings.HasPrefix(kv, "CREDENTIALS_DIRECTORY=") {
			env = append(env, kv)
		}
	}
	env = append(env, "NOTIFY_SOCKET="+sockPath, "CREDENTIALS_DIRECTORY="+creds)
	var output syncBuffer
	cmd := exec.Command(bin, "serve", "--config", filepath.Join(root, "packaging", "tokend.yaml"),
		"--data-dir", data, "--admin-listen", adminAddr, "--ctkip-listen", ctkipAddr)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = &output, &output
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	done := make(chan struct{})
	go func() { exited <- cmd.Wait(); close(done) }()
	defer func() {
		select {
		case <-done:
		default:
			_ = cmd.Process.Kill()
			<-done
		}
	}()

	// TimeoutStartSec=60s.
	waitFor(t, notes, exited, "READY=1", 60*time.Second, &output)
	for name, addr := range map[string]string{"admin": adminAddr, "CT-KIP": ctkipAddr} {
		// The self-signed certificate is not what is under test here.
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr,
			&tls.Config{InsecureSkipVerify: true}) //nolint:gosec // test of a self-signed listener
		if err != nil {
			t.Errorf("after READY=1 the %s listener %s does not complete a TLS handshake: %v", name, addr, err)
			continue
		}
		c.Close()
	}
	tokenPath := filepath.Join(data, "admin-token")
	info, err := os.Stat(tokenPath)
	if err != nil {
		t.Errorf("no admin token after the first start: %v", err)
	} else {
		if perm := info.Mode().Perm(); perm != 0o600 {
			t.Errorf("admin-token mode %o, want 600", perm)
		}
		token, _ := os.ReadFile(tokenPath)
		if tok := strings.TrimSpace(string(token)); tok == "" || strings.Contains(output.String(), tok) {
			t.Errorf("the admin token is empty or was printed; only its path may be:\n%s", output.String())
		}
		if !strings.Contains(output.String(), tokenPath) {
			t.Errorf("the daemon did not print the admin token's path %s:\n%s", tokenPath, output.String())
		}
	}
	if strings.Contains(output.String(), hex.EncodeToString(key)) {
		t.Error("the daemon printed the master key")
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitFor(t, notes, exited, "STOPPING=1", 30*time.Second, &output)
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("after SIGTERM the daemon exited with %v, want status 0:\n%s", err, output.String())
		}
	case <-time.After(30 * time.Second): // TimeoutStopSec=30s
		t.Fatalf("the daemon did not exit within 30s of SIGTERM:\n%s", output.String())
	}
	t.Logf("daemon output:\n%s", output.String())
}

// waitFor waits for a notification message containing the line want.
func waitFor(t *testing.T, notes <-chan string, exited <-chan error, want string, d time.Duration, output *syncBuffer) {
	t.Helper()
	timeout := time.After(d)
	for {
		select {
		case msg, ok := <-notes:
			if !ok {
				t.Fatalf("notification socket closed before %s", want)
			}
			for _, line := range strings.Split(msg, "\n") {
				if line == want {
					return
				}
			}
		case err := <-exited:
			t.Fatalf("the daemon exited (%v) before sending %s:\n%s", err, want, output.String())
		case <-timeout:
			t.Fatalf("no %s within %s:\n%s", want, d, output.String())
		}
	}
}

// syncBuffer collects the daemon's output while the test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
