package etcdtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
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

// startTimeout bounds the wait for a member (or a cluster's quorum) to
// report healthy. A member starts in about a second; -race and a busy
// machine make it several.
const startTimeout = 30 * time.Second

// Binary returns the path of the etcd server binary, or "" if it is not
// installed.
func Binary() string {
	if p, err := exec.LookPath("etcd"); err == nil {
		return p
	}
	for _, p := range []string{"/usr/bin/etcd", "/usr/sbin/etcd"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// Require skips the test when etcd is missing, or fails it under CI=true,
// where a missing fixture must never turn into a silent skip.
func Require(tb testing.TB) {
	tb.Helper()
	if Binary() != "" {
		return
	}
	msg := "etcdtest: etcd is not installed; run `DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends etcd-server`"
	if os.Getenv("CI") == "true" {
		tb.Fatal(msg)
	}
	tb.Skip(msg)
}

// Member is one running (or killed) etcd member.
type Member struct {
	Name      string
	ClientURL string // http://127.0.0.1:PORT
	PeerURL   string
	Dir       string // data directory

	bin     string
	args    []string
	logPath string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

// Cluster is a set of members that form one etcd cluster.
type Cluster struct {
	Members []*Member
}

// Endpoints returns every member's client URL.
func (c *Cluster) Endpoints() []string {
	out := make([]string, 0, len(c.Members))
	for _, m := range c.Members {
		out = append(out, m.ClientURL)
	}
	return out
}

// Start starts a single-member cluster.
func Start(tb testing.TB) *Cluster { return StartCluster(tb, 1) }

// StartCluster starts a cluster of n members and waits until every member
// is healthy (the cluster has a leader). It calls Require first. The members
// are stopped in tb.Cleanup.
func StartCluster(tb testing.TB, n int) *Cluster {
	tb.Helper()
	Require(tb)
	if n < 1 {
		tb.Fatalf("etcdtest: %d members", n)
	}
	var lastErr error
	// Free ports are picked by binding and releasing them, so another
	// process may take one before etcd binds it: try again with new ports.
	for range 5 {
		c, err := tryStart(tb, n)
		if err == nil {
			return c
		}
		lastErr = err
	}
	tb.Fatalf("etcdtest: %v", lastErr)
	return nil
}

func tryStart(tb testing.TB, n int) (*Cluster, error) {
	base := tb.TempDir()
	c := &Cluster{}
	var initial []string
	for i := range n {
		m := &Member{Name: fmt.Sprintf("n%d", i+1), bin: Binary()}
		cp, err := freePort()
		if err != nil {
			return nil, err
		}
		pp, err := freePort()
		if err != nil {
			return nil, err
		}
		m.ClientURL = fmt.Sprintf("http://127.0.0.1:%d", cp)
		m.PeerURL = fmt.Sprintf("http://127.0.0.1:%d", pp)
		m.Dir = filepath.Join(base, m.Name)
		m.logPath = filepath.Join(base, m.Name+".log")
		initial = append(initial, m.Name+"="+m.PeerURL)
		c.Members = append(c.Members, m)
	}
	for _, m := range c.Members {
		m.args = []string{
			"--name", m.Name, "--data-dir", m.Dir,
			"--listen-client-urls", m.ClientURL, "--advertise-client-urls", m.ClientURL,
			"--listen-peer-urls", m.PeerURL, "--initial-advertise-peer-urls", m.PeerURL,
			"--initial-cluster", strings.Join(initial, ","), "--initial-cluster-state", "new",
			"--initial-cluster-token", "etcdtest-" + filepath.Base(base),
			"--logger", "zap", "--log-outputs", "stderr", "--log-level", "warn",
		}
	}
	for _, m := range c.Members {
		if err := m.start(); err != nil {
			c.stop()
			return nil, err
		}
	}
	deadline := time.Now().Add(startTimeout)
	for _, m := range c.Members {
		if err := m.waitHealthy(deadline); err != nil {
			c.stop()
			return nil, err
		}
	}
	tb.Cleanup(c.stop)
	return c, nil
}

func (c *Cluster) stop() {
	for _, m := range c.Members {
		m.Stop()
	}
}

func (m *Member) start() error {
	logf, err := os.OpenFile(m.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(m.bin, m.args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group, so a test's ^C does not reach it before
	// Cleanup. (Debian's 3.4 on amd64 needs no ETCD_UNSUPPORTED_ARCH.)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start %s: %w", m.Name, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(exited)
	}()
	m.mu.Lock()
	m.cmd, m.exited = cmd, exited
	m.mu.Unlock()
	return nil
}

// waitHealthy polls the member's /health until it reports a leader.
func (m *Member) waitHealthy(deadline time.Time) error {
	client := &http.Client{Timeout: time.Second}
	for time.Now().Before(deadline) {
		m.mu.Lock()
		exited := m.exited
		m.mu.Unlock()
		select {
		case <-exited:
			return fmt.Errorf("member %s exited during start:\n%s", m.Name, m.Log())
		default:
		}
		resp, err := client.Get(m.ClientURL + "/health")
		if err == nil {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && strings.Contains(string(b), `"health":"true"`) {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("member %s not healthy within %v:\n%s", m.Name, startTimeout, m.Log())
}

// Log returns the member's output so far (for failure messages).
func (m *Member) Log() string {
	b, _ := os.ReadFile(m.logPath)
	if len(b) > 4096 {
		b = b[len(b)-4096:]
	}
	return string(b)
}

// Kill sends SIGKILL (a crash: no clean shutdown) and waits for the exit.
func (m *Member) Kill() { m.signal(syscall.SIGKILL, 0) }

// Stop ends the member with SIGTERM (SIGKILL after 5 s). Stopping a stopped
// member does nothing.
func (m *Member) Stop() { m.signal(syscall.SIGTERM, 5*time.Second) }

func (m *Member) signal(sig syscall.Signal, grace time.Duration) {
	m.mu.Lock()
	cmd, exited := m.cmd, m.exited
	m.mu.Unlock()
	if cmd == nil {
		return
	}
	select {
	case <-exited:
		return
	default:
	}
	_ = cmd.Process.Signal(sig)
	if grace > 0 {
		select {
		case <-exited:
			return
		case <-time.After(grace):
			_ = cmd.Process.Kill()
		}
	}
	<-exited
}

// Restart starts a stopped or killed member again on its data directory and
// ports, and waits until it is healthy (for a cluster member, that needs a
// quorum).
func (m *Member) Restart(tb testing.TB) {
	tb.Helper()
	m.Stop()
	if err := m.start(); err != nil {
		tb.Fatal(err)
	}
	if err := m.waitHealthy(time.Now().Add(startTimeout)); err != nil {
		tb.Fatal(err)
	}
}

// Running reports whether the member's process is alive.
func (m *Member) Running() bool {
	m.mu.Lock()
	exited := m.exited
	m.mu.Unlock()
	if exited == nil {
		return false
	}
	select {
	case <-exited:
		return false
	default:
		return true
	}
}

// freePort picks a free port below the kernel's ephemeral range. A member
// restarted after a kill must bind its old ports again; a port from the
// ephemeral range may meanwhile have become another connection's source
// port or another test's listener (CI saw "address already in use" on a
// restart), which ports outside it do not.
func freePort() (int, error) {
	lo := ephemeralLow()
	const from = 10000
	if lo <= from+1000 {
		// An unusual range: the kernel's choice is all there is.
		return listenPort("127.0.0.1:0")
	}
	var lastErr error
	for range 50 {
		p, err := listenPort(fmt.Sprintf("127.0.0.1:%d", from+mrand.IntN(lo-from)))
		if err == nil {
			return p, nil
		}
		lastErr = err
	}
	return 0, lastErr
}

func listenPort(addr string) (int, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// ephemeralLow is the first port of the kernel's ephemeral range (32768
// if it cannot be read).
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 32768
	}
	n, err := strconv.Atoi(f[0])
	if err != nil {
		return 32768
	}
	return n
}

// errUnhealthy is what WaitHealthy returns when the deadline passes.
var errUnhealthy = errors.New("etcdtest: cluster not healthy")

// WaitHealthy waits until every running member reports a leader, or ctx ends.
func (c *Cluster) WaitHealthy(ctx context.Context) error {
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(startTimeout)
	}
	for _, m := range c.Members {
		if !m.Running() {
			continue
		}
		if err := m.waitHealthy(deadline); err != nil {
			return fmt.Errorf("%w: %w", errUnhealthy, err)
		}
	}
	return nil
}
