package framing_test

import (
	"bytes"
	"testing"

	"github.com/gatework/gatework/internal/framing"
)

var benchConfigs = []struct {
	name string
	cfg  framing.Config
}{
	{"line", framing.Config{}},
	{"line-crlf", framing.Config{Delimiter: "\r\n"}},
	{"length", framing.Config{Kind: "length"}},
}

// BenchmarkDecode decodes 100-byte messages fed one per Feed, 64 per Feed,
// and as 1000-byte reads that cut every tenth message in two (so the
// pending buffer is used). ns/msg is the cost per message.
func BenchmarkDecode(b *testing.B) {
	msg := bytes.Repeat([]byte("m"), 100)
	for _, bc := range benchConfigs {
		frame, err := bc.cfg.AppendFrame(nil, msg)
		if err != nil {
			b.Fatal(err)
		}
		stream := bytes.Repeat(frame, 64)
		var reads [][]byte
		for off := 0; off < len(stream); off += 1000 {
			reads = append(reads, stream[off:min(off+1000, len(stream))])
		}
		for _, feed := range []struct {
			name  string
			reads [][]byte
			msgs  int
		}{
			{"1-per-Feed", [][]byte{frame}, 1},
			{"64-per-Feed", [][]byte{stream}, 64},
			{"1000B-reads", reads, 64},
		} {
			b.Run(bc.name+"/"+feed.name, func(b *testing.B) {
				d, err := framing.NewDecoder(bc.cfg)
				if err != nil {
					b.Fatal(err)
				}
				n := 0
				emit := func(m []byte) error { n += len(m); return nil }
				b.ReportAllocs()
				b.SetBytes(int64(len(frame) * feed.msgs))
				for b.Loop() {
					for _, r := range feed.reads {
						if err := d.Feed(r, emit); err != nil {
							b.Fatal(err)
						}
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*feed.msgs), "ns/msg")
				if n == 0 {
					b.Fatal("nothing decoded")
				}
			})
		}
	}
}

func BenchmarkAppendFrame(b *testing.B) {
	msg := bytes.Repeat([]byte("m"), 100)
	for _, bc := range benchConfigs {
		b.Run(bc.name, func(b *testing.B) {
			dst := make([]byte, 0, 256)
			b.ReportAllocs()
			b.SetBytes(int64(len(msg)))
			for b.Loop() {
				var err error
				if dst, err = bc.cfg.AppendFrame(dst[:0], msg); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
