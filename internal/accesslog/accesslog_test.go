package accesslog

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestOneFormatAndThrottle(t *testing.T) {
	var buf bytes.Buffer
	l := New(slog.New(slog.NewJSONHandler(&buf, nil)), "ctkip", 0.001, 3)
	for range 10 {
		l.Request(context.Background(), "POST", "/ctkip/services/CtkipService", 200, 1500*time.Microsecond, "192.0.2.7:40000")
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d lines logged with a burst of 3:\n%s", len(lines), buf.String())
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"msg": "http request", "listener": "ctkip", "method": "POST", "route": "/ctkip/services/CtkipService",
		"status": 200.0, "duration_ms": 1.5, "remote": "192.0.2.7"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	// The count of suppressed lines rides on the next line written.
	l.lim.SetLimit(1000)
	time.Sleep(5 * time.Millisecond)
	buf.Reset()
	l.Request(context.Background(), "GET", "", 405, time.Millisecond, "[2001:db8::1]:443")
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if got["suppressed"] != 7.0 || got["remote"] != "2001:db8::1" {
		t.Fatalf("after the flood: %v", got)
	}
}

// TestMethodBounded: a method a client invents is logged as OTHER.
func TestMethodBounded(t *testing.T) {
	for in, want := range map[string]string{"GET": "GET", "POST": "POST", "PATCH": "PATCH", "post": "OTHER",
		"X" + strings.Repeat("A", 4096): "OTHER", "": "OTHER"} {
		if got := Method(in); got != want {
			t.Errorf("Method(%.20q) = %q, want %q", in, got, want)
		}
	}
	var buf bytes.Buffer
	New(slog.New(slog.NewJSONHandler(&buf, nil)), "ctkip", 0, 0).
		Request(context.Background(), "BREW12345", "/", 405, time.Millisecond, "192.0.2.7:1")
	var got map[string]any
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if got["method"] != "OTHER" {
		t.Fatalf("invented method logged as %v", got["method"])
	}
}
