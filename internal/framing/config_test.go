package framing_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/gatework/gatework/internal/framing"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		cfg     framing.Config
		wantKey string // "" = valid
		wantMsg string // if set, the exact error text
	}{
		{name: "zero", cfg: framing.Config{}},
		{name: "line", cfg: framing.Config{Kind: "line"}},
		{name: "line crlf", cfg: framing.Config{Kind: "line", Delimiter: "\r\n", MaxMessage: 10}},
		{name: "line 64-byte delimiter", cfg: framing.Config{Delimiter: strings.Repeat("x", 64)}},
		{name: "line 65-byte delimiter", cfg: framing.Config{Delimiter: strings.Repeat("x", 65)}, wantKey: "delimiter"},
		{name: "raw", cfg: framing.Config{Kind: "raw", MaxMessage: 4096}},
		{name: "length zero options", cfg: framing.Config{Kind: "length"}},
		{name: "length all options", cfg: framing.Config{Kind: "length", LengthSize: 2, ByteOrder: "little", LengthOffset: 3, HeaderSize: 9, LengthIncludesHeader: true, DeliverHeader: true, MaxMessage: 100}},
		{name: "length size 1", cfg: framing.Config{Kind: "length", LengthSize: 1}},
		{name: "length header exactly offset+size", cfg: framing.Config{Kind: "length", LengthSize: 2, LengthOffset: 2, HeaderSize: 4}},
		{name: "max message limit", cfg: framing.Config{MaxMessage: framing.MaxMaxMessage}},

		{name: "unknown kind", cfg: framing.Config{Kind: "websocket"}, wantKey: "kind",
			wantMsg: `framing: kind: must be line, length or raw, got "websocket"`},
		{name: "kind is case sensitive", cfg: framing.Config{Kind: "Line"}, wantKey: "kind"},
		{name: "length size 3", cfg: framing.Config{Kind: "length", LengthSize: 3}, wantKey: "length_size",
			wantMsg: "framing: length_size: must be 1, 2 or 4, got 3"},
		{name: "length size 8", cfg: framing.Config{Kind: "length", LengthSize: 8}, wantKey: "length_size"},
		{name: "length size negative", cfg: framing.Config{Kind: "length", LengthSize: -1}, wantKey: "length_size"},
		{name: "byte order", cfg: framing.Config{Kind: "length", ByteOrder: "network"}, wantKey: "byte_order"},
		{name: "negative offset", cfg: framing.Config{Kind: "length", LengthOffset: -1}, wantKey: "length_offset"},
		{name: "huge offset", cfg: framing.Config{Kind: "length", LengthOffset: 1 << 20}, wantKey: "length_offset"},
		{name: "negative header", cfg: framing.Config{Kind: "length", HeaderSize: -4}, wantKey: "header_size"},
		{name: "header too small", cfg: framing.Config{Kind: "length", LengthOffset: 2, HeaderSize: 5}, wantKey: "header_size",
			wantMsg: "framing: header_size: must be at least length_offset+length_size = 6, got 5"},
		{name: "header too small for default size", cfg: framing.Config{Kind: "length", HeaderSize: 3}, wantKey: "header_size"},
		{name: "header too large", cfg: framing.Config{Kind: "length", HeaderSize: framing.MaxHeaderSize + 1}, wantKey: "header_size"},
		{name: "included header does not fit field", cfg: framing.Config{Kind: "length", LengthSize: 1, HeaderSize: 256, LengthIncludesHeader: true}, wantKey: "header_size"},
		{name: "delivered header exceeds max", cfg: framing.Config{Kind: "length", HeaderSize: 8, DeliverHeader: true, MaxMessage: 7}, wantKey: "header_size"},
		{name: "negative max", cfg: framing.Config{MaxMessage: -1}, wantKey: "max_message"},
		{name: "max too large", cfg: framing.Config{Kind: "raw", MaxMessage: framing.MaxMaxMessage + 1}, wantKey: "max_message"},

		{name: "delimiter with length", cfg: framing.Config{Kind: "length", Delimiter: "\n"}, wantKey: "delimiter",
			wantMsg: `framing: delimiter: only valid with kind line, kind is "length"`},
		{name: "delimiter with raw", cfg: framing.Config{Kind: "raw", Delimiter: "\n"}, wantKey: "delimiter"},
		{name: "length_size with line", cfg: framing.Config{LengthSize: 2}, wantKey: "length_size",
			wantMsg: `framing: length_size: only valid with kind length, kind is "line"`},
		{name: "byte_order with line", cfg: framing.Config{Kind: "line", ByteOrder: "big"}, wantKey: "byte_order"},
		{name: "length_offset with raw", cfg: framing.Config{Kind: "raw", LengthOffset: 1}, wantKey: "length_offset"},
		{name: "header_size with raw", cfg: framing.Config{Kind: "raw", HeaderSize: 4}, wantKey: "header_size"},
		{name: "includes with line", cfg: framing.Config{LengthIncludesHeader: true}, wantKey: "length_includes_header"},
		{name: "deliver with raw", cfg: framing.Config{Kind: "raw", DeliverHeader: true}, wantKey: "deliver_header"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.wantKey == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				if err := tt.cfg.WithDefaults().Validate(); err != nil {
					t.Fatalf("WithDefaults().Validate() = %v, want nil", err)
				}
				if _, err := framing.NewDecoder(tt.cfg); err != nil {
					t.Fatalf("NewDecoder() = %v", err)
				}
				return
			}
			var ce *framing.ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("Validate() = %v, want a *ConfigError", err)
			}
			if ce.Key != tt.wantKey {
				t.Errorf("key = %q, want %q (error %q)", ce.Key, tt.wantKey, err)
			}
			if !strings.HasPrefix(err.Error(), "framing: "+tt.wantKey+": ") {
				t.Errorf("error %q does not start with the key", err)
			}
			if tt.wantMsg != "" && err.Error() != tt.wantMsg {
				t.Errorf("error = %q, want %q", err, tt.wantMsg)
			}
			// Defaults neither hide nor cause a problem.
			if err2 := tt.cfg.WithDefaults().Validate(); err2 == nil || !errors.As(err2, &ce) || ce.Key != tt.wantKey {
				t.Errorf("WithDefaults().Validate() = %v, want the same key", err2)
			}
			if d, err := framing.NewDecoder(tt.cfg); err == nil || d != nil {
				t.Errorf("NewDecoder() = %v, %v; want nil and an error", d, err)
			}
			if _, err := tt.cfg.AppendFrame(nil, []byte("x")); !errors.As(err, &ce) {
				t.Errorf("AppendFrame() error = %v, want a *ConfigError", err)
			}
		})
	}
}

func TestWithDefaults(t *testing.T) {
	const mib = 1 << 20
	tests := []struct {
		name string
		in   framing.Config
		want framing.Config
	}{
		{"zero", framing.Config{}, framing.Config{Kind: "line", Delimiter: "\n", MaxMessage: mib}},
		{"line keeps delimiter", framing.Config{Kind: "line", Delimiter: "\r\n", MaxMessage: 5},
			framing.Config{Kind: "line", Delimiter: "\r\n", MaxMessage: 5}},
		{"raw", framing.Config{Kind: "raw"}, framing.Config{Kind: "raw", MaxMessage: mib}},
		{"length", framing.Config{Kind: "length"},
			framing.Config{Kind: "length", LengthSize: 4, ByteOrder: "big", HeaderSize: 4, MaxMessage: mib}},
		{"length offset", framing.Config{Kind: "length", LengthSize: 2, LengthOffset: 3},
			framing.Config{Kind: "length", LengthSize: 2, ByteOrder: "big", LengthOffset: 3, HeaderSize: 5, MaxMessage: mib}},
		{"length keeps explicit", framing.Config{Kind: "length", LengthSize: 1, ByteOrder: "little", HeaderSize: 7, MaxMessage: 9},
			framing.Config{Kind: "length", LengthSize: 1, ByteOrder: "little", HeaderSize: 7, MaxMessage: 9}},
		{"length leaves delimiter for Validate", framing.Config{Kind: "length", Delimiter: "x"},
			framing.Config{Kind: "length", Delimiter: "x", LengthSize: 4, ByteOrder: "big", HeaderSize: 4, MaxMessage: mib}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.in.WithDefaults()
			if got != tt.want {
				t.Fatalf("WithDefaults() = %+v, want %+v", got, tt.want)
			}
			if again := got.WithDefaults(); again != got {
				t.Fatalf("WithDefaults is not idempotent: %+v", again)
			}
		})
	}
}

func TestConfigString(t *testing.T) {
	tests := []struct {
		cfg  framing.Config
		want string
	}{
		{framing.Config{}, `line "\n" max 1048576`},
		{framing.Config{Kind: "raw", MaxMessage: 10}, "raw max 10"},
		{framing.Config{Kind: "length", LengthSize: 2, LengthIncludesHeader: true, DeliverHeader: true},
			"length 2 big offset 0 header 2 includes-header deliver-header max 1048576"},
	}
	for _, tt := range tests {
		if got := tt.cfg.String(); got != tt.want {
			t.Errorf("String() = %q, want %q", got, tt.want)
		}
	}
}
