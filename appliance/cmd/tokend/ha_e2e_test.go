package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"tokend/ctkip"
	"tokend/internal/etcdtest"
)

// haNode is a tokend serve process on an etcd store.
type haNode struct {
	*instance
	cmd  *exec.Cmd
	done chan struct{}
}

func startHANode(t *testing.T, bin, dir string, args ...string) *haNode {
	t.Helper()
	ready := make(chan map[string]string, 1)
	logs := &syncBuffer{ready: ready}
	argv := append([]string{"serve", "--data-dir", dir, "--admin-listen", "127.0.0.1:0", "--ctkip-listen", "127.0.0.1:0",
		"--log-format", "json"}, args...)
	cmd := exec.Command(bin, argv...)
	cmd.Stdout, cmd.Stderr = logs, logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	n := &haNode{cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(n.done) }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-n.done })
	var m map[string]string
	select {
	case m = <-ready:
	case <-n.done:
		t.Fatalf("tokend exited before it was ready:\n%s", logs.String())
	case <-time.After(60 * time.Second):
		t.Fatalf("tokend not ready within 60s:\n%s", logs.String())
	}
	token, err := os.ReadFile(filepath.Join(dir, "admin-token"))
	if err != nil {
		t.Fatal(err)
	}
	n.instance = &instance{dir: dir, admin: "https://" + m["admin"], ctkipURL: m["ctkip_url"],
		token: strings.TrimSpace(string(token)), client: newTrustingClient(t, filepath.Join(dir, "tls.crt")), logs: logs}
	return n
}

// runnerLeader reads tokend_runner_leader from the node's /metrics; -1
// when the node does not answer.
func (n *haNode) runnerLeader() int {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, n.admin+"/metrics", nil)
	resp, err := n.client.Do(req)
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		switch sc.Text() {
		case "tokend_runner_leader 1":
			return 1
		case "tokend_runner_leader 0":
			return 0
		}
	}
	return -1
}

// TestTwoNodesOnEtcd runs two tokend processes on one real etcd: a CT-KIP
// exchange whose first POST goes to node A and second to node B
// provisions a token B then authenticates; exactly one node is the runner,
// and when it is killed (SIGKILL: no resignation) the other takes over
// within the runner lease.
func TestTwoNodesOnEtcd(t *testing.T) {
	etcdtest.Require(t)
	c := etcdtest.Start(t)
	bin := buildTokend(t)
	storeArgs := []string{"--store", "etcd", "--etcd-endpoints", c.Endpoints()[0], "--etcd-prefix", "/two/"}
	dirA, dirB := t.TempDir(), t.TempDir()
	a := startHANode(t, bin, dirA, storeArgs...)
	// Every node uses the same master key, and the bootstrap admin token
	// file: a node that finds none replaces the one token of that name in
	// the shared store, which would lock the first node's file out.
	for _, f := range []string{"master.key", "admin-token"} {
		b, err := os.ReadFile(filepath.Join(dirA, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dirB, f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	b := startHANode(t, bin, dirB, storeArgs...)

	t.Run("CT-KIP first POST at A, second at B", func(t *testing.T) {
		_, d := seedProcedure(t, a.instance)
		pool := x509.NewCertPool()
		for _, dir := range []string{dirA, dirB} {
			pem, err := os.ReadFile(filepath.Join(dir, "tls.crt"))
			if err != nil {
				t.Fatal(err)
			}
			pool.AppendCertsFromPEM(pem)
		}
		host := func(u string) string {
			p, err := url.Parse(u)
			if err != nil {
				t.Fatal(err)
			}
			return p.Host
		}
		tr := &route{base: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, hosts: []string{host(a.ctkipURL), host(b.ctkipURL)}}
		res, err := (&ctkip.Client{HTTP: &http.Client{Transport: tr, Timeout: 30 * time.Second}}).Provision(context.Background(), d.CTKIPURL, d.ActivationCode)
		if err != nil {
			t.Fatalf("provision across nodes: %v\nA:\n%s\nB:\n%s", err, a.logs.String(), b.logs.String())
		}
		if tr.n.Load() != 2 {
			t.Fatalf("%d requests, want 2", tr.n.Load())
		}
		acceptsTokencode(t, b.instance, "alice", res) // B accepts the seed provisioned across nodes
	})

	t.Run("runner moves when its node is killed", func(t *testing.T) {
		var leader, other *haNode
		deadline := time.Now().Add(30 * time.Second)
		for leader == nil {
			la, lb := a.runnerLeader(), b.runnerLeader()
			switch {
			case la == 1 && lb == 1:
				t.Fatal("two runners at once")
			case la == 1 && lb == 0:
				leader, other = a, b
			case lb == 1 && la == 0:
				leader, other = b, a
			case time.Now().After(deadline):
				t.Fatalf("no runner elected within 30s (a=%d b=%d)", la, lb)
			default:
				time.Sleep(100 * time.Millisecond)
			}
		}
		killed := time.Now()
		if err := leader.cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		<-leader.done
		for other.runnerLeader() != 1 {
			if time.Since(killed) > runnerTTL+15*time.Second {
				t.Fatalf("the surviving node did not take over within %v:\n%s", runnerTTL+15*time.Second, other.logs.String())
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Logf("runner moved %v after SIGKILL (lease %v)", time.Since(killed).Round(10*time.Millisecond), runnerTTL)
	})
}
