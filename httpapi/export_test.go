package httpapi

import (
	"slices"
	"strings"
)

// DispatchNames is every method name ServeHTTP dispatches (aliases
// included), sorted; for black-box tests.
func (h *Handler) DispatchNames() []string {
	names := make([]string, 0, len(h.methods))
	for name := range h.methods {
		names = append(names, name)
	}
	slices.SortFunc(names, strings.Compare)
	return names
}
