package load

import (
	"strings"
	"testing"
)

func TestParseGoMemory(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    GoMemory
		wantErr bool
	}{
		{"both", "# HELP go_memstats_heap_inuse_bytes x\n# TYPE go_memstats_heap_inuse_bytes gauge\n" +
			"go_memstats_heap_inuse_bytes 1.2345e+06\ngo_memstats_heap_inuse_total 9\ngo_memstats_stack_inuse_bytes 524288\n",
			GoMemory{HeapInuse: 1234500, StackInuse: 524288}, false},
		{"stack missing", "go_memstats_heap_inuse_bytes 10\n", GoMemory{}, true},
		{"bad value", "go_memstats_heap_inuse_bytes ten\ngo_memstats_stack_inuse_bytes 1\n", GoMemory{}, true},
		{"empty", "", GoMemory{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseGoMemory(strings.NewReader(tt.in))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if !tt.wantErr && got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}
