package workerflag_test

import (
	"flag"
	"io"
	"testing"

	"github.com/gatework/gatework/bus"
	"github.com/gatework/gatework/cli/workerflag"
)

func TestWorkerFlags(t *testing.T) {
	tests := []struct {
		name       string
		env        map[string]string
		args       []string
		want       bus.Options
		wantPrefix string
		wantLog    workerflag.LogConfig
	}{
		{name: "defaults", want: bus.Options{URL: workerflag.DefaultWorkerURL, InboxPrefix: "gw.inbox.worker"}, wantPrefix: bus.DefaultPrefix},
		{name: "environment",
			env: map[string]string{"GATEWORK_NATS_URL": "nats://a:1", "GATEWORK_NATS_USER": "u",
				"GATEWORK_NATS_PASSWORD": "p", "GATEWORK_NATS_TLS_CA_FILE": "ca.pem", "GATEWORK_PREFIX": "app",
				"GATEWORK_LOG_LEVEL": "debug", "GATEWORK_LOG_FORMAT": "json"},
			wantLog:    workerflag.LogConfig{Level: "debug", Format: "json"},
			want:       bus.Options{URL: "nats://a:1", User: "u", Password: "p", CAFile: "ca.pem", InboxPrefix: "app.inbox.worker"},
			wantPrefix: "app"},
		{name: "inbox prefix follows the prefix flag",
			env:        map[string]string{"GATEWORK_PREFIX": "app"},
			args:       []string{"-prefix", "b"},
			want:       bus.Options{URL: workerflag.DefaultWorkerURL, InboxPrefix: "b.inbox.worker"},
			wantPrefix: "b"},
		{name: "inbox prefix flag",
			args:       []string{"-inbox-prefix", "my.inbox", "-prefix", "c"},
			want:       bus.Options{URL: workerflag.DefaultWorkerURL, InboxPrefix: "my.inbox"},
			wantPrefix: "c"},
		{name: "flags over environment",
			env:        map[string]string{"GATEWORK_NATS_USER": "u", "GATEWORK_NATS_TOKEN": "t"},
			args:       []string{"-nats", "nats://b:2", "-user", "v", "-creds", "c.creds", "-nkey", "s.nk", "-tls-cert", "c.pem", "-tls-key", "k.pem", "-prefix", "x"},
			want:       bus.Options{URL: "nats://b:2", User: "v", Token: "t", CredsFile: "c.creds", NKeySeedFile: "s.nk", CertFile: "c.pem", KeyFile: "k.pem", InboxPrefix: "x.inbox.worker"},
			wantPrefix: "x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			fs := flag.NewFlagSet("worker", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			var f workerflag.Flags
			f.Register(fs)
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			o, prefix := f.Bus, f.Prefix
			if f.Log != tt.wantLog {
				t.Errorf("log %+v, want %+v", f.Log, tt.wantLog)
			}
			if o != tt.want || prefix != tt.wantPrefix {
				t.Errorf("got %+v prefix %q, want %+v prefix %q", o, prefix, tt.want, tt.wantPrefix)
			}
		})
	}
}
