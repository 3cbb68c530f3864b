package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatework/gatework/bus"
	"github.com/gatework/gatework/internal/natsembed"
)

// TestWriteBusEnv: the file is 0600, readable by a POSIX shell's `.`, and
// replaces a symbolic link planted at its path instead of writing through
// it.
func TestWriteBusEnv(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(dir, "victim")
	if err := os.WriteFile(victim, []byte("keep\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	path := busEnvFile(filepath.Join(dir, "gatework.pid"))
	if filepath.Base(path) != "gatework.nats.env" {
		t.Fatalf("path %s", path)
	}
	if err := os.Symlink(victim, path); err != nil {
		t.Fatal(err)
	}
	o := bus.Options{URL: "nats://127.0.0.1:4222", User: natsembed.WorkerUser, Password: "it's-secret", CAFile: "/ca dir/ca.pem",
		InboxPrefix: "gw.inbox.worker"}
	if err := writeBusEnv(path, o, "gw"); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(victim); string(b) != "keep\n" {
		t.Fatalf("written through the symbolic link: %q", b)
	}
	st, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Mode().IsRegular() || st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want a regular file of mode 0600", st.Mode())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"GATEWORK_NATS_URL": "'nats://127.0.0.1:4222'", "GATEWORK_NATS_USER": "'gatework-worker'",
		"GATEWORK_NATS_PASSWORD": `'it'\''s-secret'`, "GATEWORK_NATS_TLS_CA_FILE": "'/ca dir/ca.pem'",
		"GATEWORK_PREFIX": "'gw'",
	}
	got := map[string]string{}
	for line := range strings.SplitSeq(string(b), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			got[k] = v
		}
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s=%s, want %s", k, got[k], v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("variables %v", got)
	}
	left, _ := filepath.Glob(filepath.Join(dir, ".gatework-nats-*"))
	if len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
}
