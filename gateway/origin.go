package gateway

import (
	"errors"
	"strings"
)

// originAllowed reports whether a WebSocket upgrade with the Origin header
// origin may proceed under the listener's allow-list. An empty list allows
// any origin. A pattern is "*" (any origin), "scheme://host[:port]" (that
// origin exactly) or "host[:port]" (that host with any scheme); a host of
// the form "*.example.com" matches every subdomain of example.com, not
// example.com itself. Comparison ignores case; a port, when the origin has
// one, must be in the pattern. An origin that is not scheme://host (such as
// "null") matches only "*".
//
// A request without an Origin header (non-browser clients) is not checked:
// the allow-list protects browser users from pages of other sites.
func originAllowed(patterns []string, origin string) bool {
	if len(patterns) == 0 {
		return true
	}
	scheme, host, ok := strings.Cut(strings.ToLower(origin), "://")
	if !ok || host == "" || strings.ContainsAny(host, "/?#@") {
		host = "" // matches no host pattern
	}
	for _, p := range patterns {
		p = strings.ToLower(p)
		if p == "*" {
			return true
		}
		if host == "" {
			continue
		}
		ps, ph, hasScheme := strings.Cut(p, "://")
		if !hasScheme {
			ps, ph = "", p
		}
		if ps != "" && ps != scheme {
			continue
		}
		if rest, wild := strings.CutPrefix(ph, "*."); wild {
			if strings.HasSuffix(host, "."+rest) && len(host) > len(rest)+1 {
				return true
			}
		} else if ph == host {
			return true
		}
	}
	return false
}

// checkOriginPattern reports what is wrong with an origins entry.
func checkOriginPattern(p string) error {
	if p == "*" {
		return nil
	}
	host := p
	if scheme, h, ok := strings.Cut(p, "://"); ok {
		if scheme == "" || strings.ContainsAny(scheme, "*/:") {
			return errors.New("bad scheme: want scheme://host[:port], host[:port] or *")
		}
		host = h
	}
	host = strings.TrimPrefix(host, "*.")
	switch {
	case host == "":
		return errors.New("empty host: want scheme://host[:port], host[:port] or *")
	case strings.ContainsAny(host, "/?#@* "):
		return errors.New("want scheme://host[:port] with no path, or *.domain")
	}
	return nil
}
