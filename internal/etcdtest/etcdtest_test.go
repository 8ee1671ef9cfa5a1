package etcdtest

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

func health(t *testing.T, url string) bool {
	t.Helper()
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url + "/health")
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return strings.Contains(string(b), `"health":"true"`)
}

func TestSingleMember(t *testing.T) {
	c := Start(t)
	if len(c.Endpoints()) != 1 || !health(t, c.Endpoints()[0]) {
		t.Fatalf("member not healthy: %v", c.Endpoints())
	}
	m := c.Members[0]
	m.Kill()
	if m.Running() || health(t, m.ClientURL) {
		t.Fatal("killed member still answers")
	}
	m.Restart(t)
	if !health(t, m.ClientURL) {
		t.Fatal("restarted member not healthy")
	}
}

// TestClusterSurvivesOneMember: a 3-member cluster keeps a quorum (and so
// reports healthy) when one member is killed.
func TestClusterSurvivesOneMember(t *testing.T) {
	c := StartCluster(t, 3)
	c.Members[0].Kill()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := c.WaitHealthy(ctx); err != nil {
		t.Fatal(err)
	}
	for _, m := range c.Members[1:] {
		if !health(t, m.ClientURL) {
			t.Errorf("%s unhealthy after one member was killed", m.Name)
		}
	}
	c.Members[0].Restart(t)
}
