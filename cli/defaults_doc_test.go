package cli_test

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/gatework/gatework/cli"
	"github.com/gatework/gatework/gateway"
	"github.com/gatework/gatework/internal/framing"
)

// docRow is one row of a key table of docs/config.md.
type docRow struct {
	line       int
	section    string // the ### heading: "Top level", "`listeners`", …
	table      string // the first key of the row's table
	key, value string // the key and its default's leading code span
	meaning    string
}

// docDefaults reads the key tables of docs/config.md: every row whose
// default cell starts with a code span.
func docDefaults(t *testing.T) []docRow {
	t.Helper()
	f, err := os.Open("../docs/config.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var rows []docRow
	section, table := "", ""
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if h, ok := strings.CutPrefix(line, "### "); ok {
			section, table = h, ""
			continue
		}
		if !strings.HasPrefix(line, "| `") {
			if !strings.HasPrefix(line, "|") {
				table = ""
			}
			continue
		}
		cells := strings.Split(line, "|")
		if len(cells) < 6 {
			continue
		}
		key := strings.Trim(strings.TrimSpace(cells[1]), "`")
		if table == "" {
			table = key
		}
		def := strings.TrimSpace(cells[3])
		if !strings.HasPrefix(def, "`") {
			continue // "(required)", "number of CPUs", "line framing", …
		}
		value, _, _ := strings.Cut(def[1:], "`")
		rows = append(rows, docRow{line: n, section: section, table: table, key: key, value: value,
			meaning: strings.TrimSpace(cells[len(cells)-2])})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return rows
}

// flatten turns decoded YAML into dotted keys; a list's elements are
// "key[i]".
func flatten(prefix string, v any, out map[string]string) {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			p := k
			if prefix != "" {
				p = prefix + "." + k
			}
			flatten(p, x, out)
		}
	case []any:
		if len(v) == 0 {
			out[prefix] = "[]"
		}
		for i, x := range v {
			flatten(fmt.Sprintf("%s[%d]", prefix, i), x, out)
		}
	case nil:
		out[prefix] = ""
	default:
		out[prefix] = fmt.Sprint(v)
	}
}

// sameDefault reports whether the documented default doc is the value got
// ("" when `gatework config` leaves the key out: a zero value).
func sameDefault(doc, got string, present bool) bool {
	if strings.HasPrefix(doc, `"`) {
		if u, err := strconv.Unquote(doc); err == nil {
			doc = u
		}
	}
	if !present {
		switch doc {
		case "", "0", "0s", "false", "[]":
			return true
		}
		return false
	}
	if doc == "[]" && got == "" {
		return true
	}
	if dd, err := time.ParseDuration(doc); err == nil {
		gd, err := time.ParseDuration(got)
		return err == nil && dd == gd
	}
	return doc == got
}

// TestDocumentedDefaults: every default that docs/config.md states as a
// value (a code span) is the one the code uses: what `gatework config`
// prints for DefaultConfig (gateway.Config.WithDefaults and
// gateway.ListenerConfig.WithDefaults underneath) with no file.
func TestDocumentedDefaults(t *testing.T) {
	c := cli.DefaultConfig("echo")
	// Listeners that show each table's keys: ws with a rate limit, TLS
	// and compression, tcp with line framing, tcp with length framing,
	// udp.
	c.Listeners = []gateway.ListenerConfig{
		{Protocol: "ws", Addr: "127.0.0.1:0", RateLimit: gateway.RateLimit{Messages: 5},
			TLS:         &gateway.TLSConfig{CertFile: "c.pem", KeyFile: "k.pem"},
			Compression: gateway.Compression{Enabled: true}},
		{Protocol: "tcp", Addr: "127.0.0.1:0"},
		{Name: "len", Protocol: "tcp", Addr: "127.0.0.1:0", Framing: framing.Config{Kind: framing.KindLength}},
		{Protocol: "udp", Addr: "127.0.0.1:0"},
	}
	e := c.Effective()
	// Effective resolves pid_file and log_file "" to the paths it means.
	e.PIDFile, e.LogFile = c.PIDFile, c.LogFile
	out, err := e.YAML()
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(out, &doc); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	flatten("", doc, got)

	checked := 0
	for _, r := range docDefaults(t) {
		var path string
		switch {
		case r.section == "`listeners`" && r.table == "name": // a listener
			path = "listeners[0]." + r.key
			switch {
			case strings.HasPrefix(r.meaning, "tcp only"):
				path = "listeners[1]." + r.key
			case strings.HasPrefix(r.meaning, "udp only"):
				path = "listeners[3]." + r.key
			}
		case r.section == "`listeners`" && r.table == "messages": // rate_limit
			if r.key == "messages" {
				continue // set above to show the others
			}
			path = "listeners[0].rate_limit." + r.key
		case r.section == "`listeners`" && r.table == "kind": // framing
			path = "listeners[1].framing." + r.key
			if strings.HasPrefix(r.meaning, "length only") {
				path = "listeners[2].framing." + r.key
			}
		case r.section == "`listeners`" && r.table == "enabled": // compression
			if r.key == "enabled" {
				continue // set above to show the others
			}
			path = "listeners[0].compression." + r.key
		case r.section == "`listeners`" && r.table == "cert_file": // tls
			path = "listeners[0].tls." + r.key
		case r.section == "`http`" && r.table != "http.addr":
			continue // the scopes table
		default:
			path = r.key
		}
		value := r.value
		if v, ok := got[strings.TrimSuffix(path, r.key)+value]; ok {
			value = v // "burst: `messages`": the value of that key
		} else if strings.ContainsAny(value, " +") {
			continue // an expression: "length_offset + length_size"
		}
		g, present := got[path]
		if !sameDefault(value, g, present) {
			t.Errorf("docs/config.md:%d: %s defaults to %q, the code to %q (present %v)", r.line, path, r.value, g, present)
		}
		checked++
	}
	t.Logf("%d documented defaults checked", checked)
	if checked < 60 {
		t.Errorf("checked %d documented defaults, want the 60 or more of docs/config.md's tables", checked)
	}
}
