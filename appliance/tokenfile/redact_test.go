package tokenfile

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestSeedRedacted(t *testing.T) {
	rec := Record{Row: 1, Serial: "000000000001", Kind: KindHardware, Algorithm: AlgHOTP, Digits: 6, Seed: Seed("SECRETSEED-0123456789")}
	leaks := []string{"SECRETSEED", "5345435245", "U0VDUkVU", "83 69 67"} // text, hex, base64, decimal bytes

	var outputs []string
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x", "%X", "%d", "%q"} {
		outputs = append(outputs, fmt.Sprintf(verb, rec), fmt.Sprintf(verb, rec.Seed), fmt.Sprintf(verb, &rec))
	}
	js, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	outputs = append(outputs, string(js))
	for _, h := range []func(*bytes.Buffer) slog.Handler{
		func(b *bytes.Buffer) slog.Handler { return slog.NewJSONHandler(b, nil) },
		func(b *bytes.Buffer) slog.Handler { return slog.NewTextHandler(b, nil) },
	} {
		var buf bytes.Buffer
		slog.New(h(&buf)).Info("imported", "record", rec, "seed", rec.Seed)
		outputs = append(outputs, buf.String())
	}
	for _, out := range outputs {
		for _, leak := range leaks {
			if strings.Contains(out, leak) {
				t.Errorf("output leaks the seed (%q): %s", leak, out)
			}
		}
	}
	if !strings.Contains(outputs[0], redacted) {
		t.Errorf("%%v output %q lacks %q", outputs[0], redacted)
	}

	rec.Seed.Zero()
	if !bytes.Equal(rec.Seed, make([]byte, len(rec.Seed))) {
		t.Error("Zero left seed bytes")
	}
}
