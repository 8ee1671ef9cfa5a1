package main

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestFlagKeysCoverEnvVars: every override flag says which key it sets, so
// a problem with its value names the flag or variable.
func TestFlagKeysCoverEnvVars(t *testing.T) {
	for _, ev := range envVars {
		key, ok := flagKey(ev.flag)
		if !ok {
			t.Errorf("flag --%s sets no Config field with a yaml key", ev.flag)
			continue
		}
		o := configOrigins{}
		o.setFlag(ev.flag, ev.env)
		got := o.locate([]string{key + ` "x": bad`})
		if diff := cmp.Diff([]string{ev.env + ": " + key + ` "x": bad`}, got); diff != "" {
			t.Errorf("--%s (-want +got):\n%s", ev.flag, diff)
		}
	}
}

func TestFlagKey(t *testing.T) {
	for flag, want := range map[string]string{"data-dir": "data_dir", "log-level": "log.level", "rest-authn-listen": "rest_authn.listen"} {
		if got, ok := flagKey(flag); !ok || got != want {
			t.Errorf("flagKey(%q) = %q, %v; want %q", flag, got, ok, want)
		}
	}
}

func TestConfigOriginsFileLines(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want configOrigins
	}{
		{"keys and sections", "data_dir: /d\nauth:\n  max_failures: 3\n  lockout_duration: 1m\n",
			configOrigins{"data_dir": "f.yaml:1", "auth.max_failures": "f.yaml:3", "auth.lockout_duration": "f.yaml:4"}},
		{"flow mapping", "ctkip: {rsa_bits: 512, session_ttl: 0s}\n",
			configOrigins{"ctkip.rsa_bits": "f.yaml:1", "ctkip.session_ttl": "f.yaml:1"}},
		{"null keeps the default", "data_dir:\nlog:\n  level: debug\n", configOrigins{"log.level": "f.yaml:3"}},
		{"syntax error adds nothing", "a: [\n", configOrigins{}},
		{"empty", "", configOrigins{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := configOrigins{}
			got.fileLines([]byte(tt.yaml), "f.yaml")
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("origins (-want +got):\n%s", diff)
			}
		})
	}
}
