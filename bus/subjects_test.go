package bus

import (
	"encoding/base64"
	"regexp"
	"strings"
	"testing"
)

func TestToken(t *testing.T) {
	long := strings.Repeat("x", maxLiteralToken+1)
	for _, tc := range []struct {
		name, want string
	}{
		{"", "b"},
		{"room", "bcm9vbQ"},
		{"a.b *>", "bYS5iICo-"},
		{"ünïcødé/?", "bw7xuw69jw7hkw6kvPw"},
		{"\x00\xff", "bAP8"},
		{strings.Repeat("y", maxLiteralToken), "b" + base64.RawURLEncoding.EncodeToString([]byte(strings.Repeat("y", maxLiteralToken)))},
		{long, ""}, // hashed: checked below
	} {
		got := Token(tc.name)
		if tc.name == long {
			// Hashed: fixed length and stable, not the literal name.
			if len(got) != 65 || got[0] != 'h' || Token(long) != got || Token(long+"z") == got {
				t.Errorf("Token(long) = %q", got)
			}
			continue
		}
		if got != tc.want {
			t.Errorf("Token(%q) = %q, want %q", tc.name, got, tc.want)
		}
	}
}

// FuzzToken checks that every name gives one valid subject token of at most
// 65 characters, and that literal tokens decode back to the name.
func FuzzToken(f *testing.F) {
	for _, s := range []string{"", "room", "a.b", "*", ">", " ", strings.Repeat("é", 40)} {
		f.Add(s)
	}
	valid := regexp.MustCompile(`^[A-Za-z0-9_-]{1,65}$`)
	f.Fuzz(func(t *testing.T, name string) {
		tok := Token(name)
		if !valid.MatchString(tok) {
			t.Fatalf("Token(%q) = %q: not a safe subject token", name, tok)
		}
		if tok[0] == 'b' {
			dec, err := base64.RawURLEncoding.DecodeString(tok[1:])
			if err != nil || string(dec) != name {
				t.Fatalf("Token(%q) = %q does not decode back (%q, %v)", name, tok, dec, err)
			}
		} else if tok[0] != 'h' || len(name) <= maxLiteralToken {
			t.Fatalf("Token(%q) = %q: wrong form", name, tok)
		}
	})
}

func TestGroupAndUIDSubjects(t *testing.T) {
	s, err := NewSubjects("acme.gw")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ got, want string }{
		{s.Group("room"), "acme.gw.grp.bcm9vbQ"},
		{s.UID("room"), "acme.gw.uid.bcm9vbQ"},
		{s.Group("a.b"), "acme.gw.grp.bYS5i"},
		{s.Broadcast(), "acme.gw.bcast"},
		{s.AllGroups(), "acme.gw.grp.*"},
		{s.AllUIDs(), "acme.gw.uid.*"},
	} {
		if tc.got != tc.want {
			t.Errorf("subject = %q, want %q", tc.got, tc.want)
		}
	}
	// A uid and a group of the same name never share a subject.
	if s.Group("x") == s.UID("x") {
		t.Error("group and uid subjects collide")
	}
}
