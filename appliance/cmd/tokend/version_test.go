package main

import (
	"bytes"
	"context"
	"runtime/debug"
	"strings"
	"testing"
)

func TestVCSSuffix(t *testing.T) {
	tests := []struct {
		name     string
		settings []debug.BuildSetting
		want     string
	}{
		{name: "no vcs stamp", settings: nil, want: ""},
		{name: "clean tree", settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "3b6d807c1e2a4f5e6d7c8b9a0f1e2d3c4b5a6978"}, {Key: "vcs.modified", Value: "false"}}, want: "+3b6d807c1e2a"},
		{name: "dirty tree", settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "3b6d807c1e2a4f5e"}, {Key: "vcs.modified", Value: "true"}}, want: "+3b6d807c1e2a+dirty"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := vcsSuffix(tc.settings); got != tc.want {
				t.Errorf("vcsSuffix = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestVersionFlag: `tokend --version` prints what `tokend version` prints.
func TestVersionFlag(t *testing.T) {
	run := func(args ...string) string {
		var out bytes.Buffer
		a := newApp(strings.NewReader(""), &out, &out, func(string) (string, bool) { return "", false })
		if code := a.execute(context.Background(), args); code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, out.String())
		}
		return out.String()
	}
	flag, cmd := run("--version"), run("version")
	if flag != cmd || !strings.HasPrefix(flag, "tokend ") {
		t.Fatalf("--version %q, version %q", flag, cmd)
	}
}
