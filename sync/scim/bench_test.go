package scim_test

import (
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
)

// BenchmarkSCIMCreateUsers posts users from 16 concurrent clients over TLS
// (RunParallel with parallelism scaled to 16 goroutines).
func BenchmarkSCIMCreateUsers(b *testing.B) {
	e := newEnv(b, true)
	client := e.srv.Client()
	client.Transport.(*http.Transport).MaxIdleConnsPerHost = 32
	var n atomic.Int64
	b.SetParallelism(max(1, 16/max(1, runtimeProcs())))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			body := fmt.Sprintf(`{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"bench%d@example.com","externalId":"b%d","displayName":"Bench %d","emails":[{"type":"work","primary":true,"value":"bench%d@example.com"}],"active":true}`, i, i, i, i)
			req, _ := http.NewRequest("POST", e.srv.URL+"/scim/v2/Users", strings.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+e.token)
			req.Header.Set("Content-Type", "application/scim+json")
			resp, err := client.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 201 {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "users/s")
}

func runtimeProcs() int { return runtime.GOMAXPROCS(0) }
