package cli

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/gatework/gatework/gateway"
)

// envPrefix starts every environment variable of the configuration.
const envPrefix = "GATEWORK_"

// Environment variables that start with GATEWORK_ without being a key.
// Any other unknown GATEWORK_ variable is an error, so that a typo does
// not go unnoticed.
var envAllowed = map[string]string{
	"GATEWORK_CONFIG": "the configuration file, when -c is not given",
}

// envAPIToken is the name for http.token; both are accepted.
const envAPIToken = "GATEWORK_API_TOKEN"

// KeyError is one problem with the configuration.
type KeyError struct {
	// Key is the offending key ("listeners[1].framing.length_size"); ""
	// when the problem is not about one key (a YAML syntax error, an
	// unknown environment variable).
	Key string
	// Where says what set the key: "gatework.yaml:12", "env
	// GATEWORK_HTTP_ADDR" or "flag --http"; "" for a default.
	Where string
	// Reason says what is wrong.
	Reason string
}

// Error returns "where: key: reason", leaving out what is empty.
func (e *KeyError) Error() string {
	var b strings.Builder
	if e.Where != "" {
		b.WriteString(e.Where + ": ")
	}
	if e.Key != "" {
		b.WriteString(e.Key + ": ")
	}
	b.WriteString(e.Reason)
	return b.String()
}

// ConfigError is an invalid configuration: every problem found, in the
// order of the file, then the environment, then the flags, then the
// checks of Validate.
type ConfigError struct {
	Problems []*KeyError
}

// Error returns the problems, one per line.
func (e *ConfigError) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.Error()
	}
	return strings.Join(lines, "\n")
}

// asError returns nil for no problems, else a *ConfigError.
func asError(probs []*KeyError) error {
	if len(probs) == 0 {
		return nil
	}
	return &ConfigError{Problems: probs}
}

// Load returns base overlaid by the YAML file at path ("" means no file)
// and then by the GATEWORK_ variables of environ (in os.Environ form). It
// does not validate (flags come next): call Validate on the result. On
// error the Config is still returned, with what could be applied, and the
// error is a *ConfigError naming every bad key: an unknown key of the file
// (with its line), a value of the wrong type, an unknown GATEWORK_
// variable.
func Load(base Config, path string, environ []string) (Config, error) {
	c := base
	c.Listeners = slices.Clone(base.Listeners)
	c.origin = nil
	var probs []*KeyError
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return c, &ConfigError{Problems: []*KeyError{{Where: path, Reason: fmt.Sprintf("cannot read: %v", errors.Unwrap(err))}}}
		}
		probs = append(probs, c.loadYAML(path, data)...)
	}
	probs = append(probs, c.applyEnv(environ)...)
	return c, asError(probs)
}

// lineRe splits yaml's "line 12: reason" messages.
var lineRe = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

// loadYAML decodes data over c, recording where each key was set.
func (c *Config) loadYAML(name string, data []byte) []*KeyError {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		where, reason := name, strings.TrimPrefix(err.Error(), "yaml: ")
		if m := lineRe.FindStringSubmatch(reason); m != nil {
			where, reason = name+":"+m[1], m[2]
		}
		return []*KeyError{{Where: where, Reason: reason}}
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return nil // an empty file: the defaults
	}
	w := keyWalker{file: name, lines: map[string]int{}, byLine: map[int]string{}}
	w.walk(doc.Content[0], reflect.TypeFor[Config](), "")
	probs := w.probs

	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil {
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			return append(probs, &KeyError{Where: name, Reason: err.Error()})
		}
		for _, msg := range te.Errors {
			if strings.Contains(msg, " not found in type ") {
				continue // the walker reported it, with its path
			}
			p := &KeyError{Where: name, Reason: msg}
			if m := lineRe.FindStringSubmatch(msg); m != nil {
				line, _ := strconv.Atoi(m[1])
				p.Where, p.Key, p.Reason = name+":"+m[1], w.byLine[line], m[2]
			}
			probs = append(probs, p)
		}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		probs = append(probs, &KeyError{Where: name, Reason: "more than one YAML document: keep one"})
	}
	for key, line := range w.lines {
		c.setOrigin(key, fmt.Sprintf("%s:%d", name, line))
	}
	return probs
}

// keyWalker checks the keys of a YAML document against the yaml tags of
// the struct they decode into, with full paths and lines.
type keyWalker struct {
	file   string
	lines  map[string]int // key path -> line
	byLine map[int]string // line -> deepest key path on it
	probs  []*KeyError
}

func (w *keyWalker) record(path string, line int) {
	w.lines[path] = line
	w.byLine[line] = path
}

func (w *keyWalker) walk(n *yaml.Node, t reflect.Type, path string) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t == durationType:
	case t.Kind() == reflect.Struct && n.Kind == yaml.MappingNode:
		fields := yamlFields(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Value == "<<" { // a merge key: yaml checks what it brings
				continue
			}
			sub := k.Value
			if path != "" {
				sub = path + "." + k.Value
			}
			f, ok := fields[k.Value]
			if !ok {
				w.probs = append(w.probs, &KeyError{
					Key:    sub,
					Where:  fmt.Sprintf("%s:%d", w.file, k.Line),
					Reason: "unknown key" + hint(sub, fields),
				})
				continue
			}
			w.record(sub, k.Line)
			w.walk(v, f.Type, sub)
		}
	case t.Kind() == reflect.Slice && n.Kind == yaml.SequenceNode:
		for i, item := range n.Content {
			sub := fmt.Sprintf("%s[%d]", path, i)
			w.record(sub, item.Line)
			w.walk(item, t.Elem(), sub)
		}
	}
}

// yamlFields maps the yaml keys of struct type t to its fields.
func yamlFields(t reflect.Type) map[string]reflect.StructField {
	m := map[string]reflect.StructField{}
	for i := range t.NumField() {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if f.IsExported() && tag != "" && tag != "-" {
			m[tag] = f
		}
	}
	return m
}

// hint suggests the nearest known key for a misspelt one.
func hint(path string, fields map[string]reflect.StructField) string {
	if path == "api.token" {
		return " (the API token is http.token)"
	}
	i := strings.LastIndexByte(path, '.')
	name := path[i+1:]
	names := make([]string, 0, len(fields))
	for k := range fields {
		names = append(names, k)
	}
	slices.Sort(names)
	if s := nearest(name, names); s != "" {
		return fmt.Sprintf(" (did you mean %s?)", path[:i+1]+s)
	}
	return fmt.Sprintf(" (known here: %s)", strings.Join(names, ", "))
}

// nearest returns the candidate within edit distance 2 of s, or "".
func nearest(s string, candidates []string) string {
	best, bestD := "", 3
	for _, c := range candidates {
		if d := editDistance(s, c); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// applyEnv sets the keys named by GATEWORK_ variables of environ. An
// empty variable counts as unset.
func (c *Config) applyEnv(environ []string) []*KeyError {
	vars := map[string]string{}
	for _, kv := range environ {
		name, value, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, envPrefix) && value != "" {
			vars[name] = value
		}
	}
	names := make([]string, 0, len(vars))
	for name := range vars {
		names = append(names, name)
	}
	slices.Sort(names)
	byEnv := map[string]keyField{}
	envNames := make([]string, 0, len(scalarKeys))
	for _, k := range scalarKeys {
		byEnv[k.env] = k
		envNames = append(envNames, k.env)
	}
	var probs []*KeyError
	for _, name := range names {
		if _, ok := envAllowed[name]; ok {
			continue
		}
		env := name
		if name == envAPIToken {
			env = envPrefix + "HTTP_TOKEN"
			if other, ok := vars[env]; ok && other != vars[name] {
				probs = append(probs, &KeyError{Key: "http.token", Where: "env " + name,
					Reason: "differs from GATEWORK_HTTP_TOKEN: set one of them"})
				continue
			}
		}
		k, ok := byEnv[env]
		if !ok {
			reason := "unknown environment variable"
			if s := nearest(name, envNames); s != "" {
				reason += " (did you mean " + s + "?)"
			} else {
				reason += " (docs/config.md lists the GATEWORK_ variables)"
			}
			probs = append(probs, &KeyError{Where: "env " + name, Reason: reason})
			continue
		}
		if err := k.set(c, vars[name]); err != nil {
			probs = append(probs, &KeyError{Key: k.path, Where: "env " + name, Reason: err.Error()})
			continue
		}
		c.setOrigin(k.path, "env "+name)
	}
	return probs
}

// Set sets the scalar key path (such as "http.addr") from its string
// form, as a flag or variable would; where says who set it, for errors
// ("flag --http").
func (c *Config) Set(path, value, where string) error {
	k, ok := keyByPath(path)
	if !ok {
		return &ConfigError{Problems: []*KeyError{{Key: path, Where: where, Reason: "unknown key"}}}
	}
	if err := k.set(c, value); err != nil {
		return &ConfigError{Problems: []*KeyError{{Key: path, Where: where, Reason: err.Error()}}}
	}
	c.setOrigin(path, where)
	return nil
}

// SetListenerAddr sets the address of the listener named name (a listener
// without a name is named by its protocol).
func (c *Config) SetListenerAddr(name, addr, where string) error {
	for i := range c.Listeners {
		l := &c.Listeners[i]
		if l.Name == name || (l.Name == "" && l.Protocol == name) {
			l.Addr = addr
			c.setOrigin(fmt.Sprintf("listeners[%d].addr", i), where)
			return nil
		}
	}
	return &ConfigError{Problems: []*KeyError{{Key: "listeners", Where: where,
		Reason: fmt.Sprintf("no listener named %q: %s", name, listenerNames(c.Listeners))}}}
}

func listenerNames(ls []gateway.ListenerConfig) string {
	if len(ls) == 0 {
		return "there are no listeners"
	}
	names := make([]string, len(ls))
	for i, l := range ls {
		names[i] = l.Name
		if names[i] == "" {
			names[i] = l.Protocol
		}
	}
	return "the listeners are " + strings.Join(names, ", ")
}
