package packaging

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestVagrantfile validates the Vagrantfile without a provider (none can run
// here) and checks the shell syntax of its provisioning script.
func TestVagrantfile(t *testing.T) {
	root := repoRoot(t)
	data, err := os.ReadFile(filepath.Join(root, "Vagrantfile"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	for _, want := range []string{
		`"debian/bookworm64"`,
		"guest: ADMIN_PORT", "guest: CTKIP_PORT", "ADMIN_PORT = 8443", "CTKIP_PORT = 8444",
		"/vagrant-dist/tokend_*_amd64.deb", "/var/lib/tokend/admin-token",
		`admin_listen: "0.0.0.0:8443"`, `ctkip_listen: "0.0.0.0:8444"`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("Vagrantfile lacks %q", want)
		}
	}

	t.Run("provision script", func(t *testing.T) {
		start := strings.Index(text, "<<~'SHELL'\n")
		end := strings.Index(text, "\nSHELL\n")
		if start < 0 || end < start {
			t.Fatal("no <<~'SHELL' … SHELL heredoc in the Vagrantfile")
		}
		script := filepath.Join(t.TempDir(), "provision.sh")
		if err := os.WriteFile(script, []byte(text[start+len("<<~'SHELL'\n"):end]+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if res := runCmd(t, time.Minute, root, nil, "bash", "-n", script); res.err != nil {
			t.Fatalf("bash -n: %v\n%s", res.err, res.out)
		}
	})

	t.Run("vagrant validate", func(t *testing.T) {
		vagrant := needTool(t, "vagrant")
		// Keep vagrant's machine state out of the work tree.
		env := []string{"VAGRANT_DOTFILE_PATH=" + filepath.Join(t.TempDir(), ".vagrant"), "VAGRANT_CHECKPOINT_DISABLE=1", "VAGRANT_NO_COLOR=1"}
		if os.Getenv("HOME") == "" {
			env = append(env, "HOME="+t.TempDir())
		}
		res := runCmd(t, 3*time.Minute, root, env, vagrant, "validate", "--ignore-provider")
		t.Logf("vagrant validate --ignore-provider:\n%s", res.out)
		if res.err != nil || !strings.Contains(res.out, "Vagrantfile validated successfully") {
			t.Fatalf("vagrant validate --ignore-provider: %v", res.err)
		}
	})
}
