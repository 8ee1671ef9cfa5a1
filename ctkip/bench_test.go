package ctkip

import (
	"context"
	"crypto/rand"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
)

func BenchmarkRSA1024OAEPDecrypt(b *testing.B) {
	key := testKey(b)
	key.Precompute()
	ct := encryptOAEP(b, &key.PublicKey, make([]byte, 16))
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := DecryptNonce(key, ct); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}

// openBackend accepts every code and never consumes it: the benchmark measures
// the protocol, not a store.
type openBackend struct{ completes atomic.Int64 }

func (*openBackend) Begin(context.Context, string) (Token, error) { return testToken, nil }
func (b *openBackend) Complete(context.Context, string, Seed) (Token, error) {
	b.completes.Add(1)
	return testToken, nil
}

func BenchmarkExchange(b *testing.B) {
	srv, err := NewServer(Config{Key: testKey(b), Backend: &openBackend{}})
	if err != nil {
		b.Fatal(err)
	}
	ts := httptest.NewTLSServer(srv)
	b.Cleanup(ts.Close)
	hc := ts.Client()
	tr := hc.Transport.(*http.Transport)
	tr.MaxIdleConnsPerHost = 4 * runtime.GOMAXPROCS(0) // keep-alive for every parallel worker
	var n atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		c := &Client{HTTP: hc, Rand: rand.Reader}
		for pb.Next() {
			code := strconv.FormatInt(100000000000+n.Add(1), 10)
			if _, err := c.Provision(context.Background(), ts.URL, code); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}

// BenchmarkServerXML measures the server's XML work for one exchange (two
// envelopes, two inner messages, two renders) without RSA or HTTP.
func BenchmarkServerXML(b *testing.B) {
	hello, finished := vectorBMessages(b)
	req1 := appendClientRequest(nil, testCode, []byte(clientPD), []byte(clientHello))
	req2 := appendClientRequest(nil, testCode, []byte(clientPD), appendClientNonce(nil, vbSessionID, make([]byte, 128), make([]byte, 16)))
	var d xdoc
	out := make([]byte, 0, 8192)
	b.ReportAllocs()
	for b.Loop() {
		for _, r := range [][]byte{req1, req2} {
			cr, err := parseClientRequest(&d, r)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := parseClientMessage(&d, cr.Message); err != nil {
				b.Fatal(err)
			}
		}
		out = appendResponse(out[:0], testCode, []byte(clientPD), hello)
		out = appendResponse(out[:0], testCode, []byte(serverFinishedPD), finished)
	}
}
