package cli

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/gatework/gatework/bus"
)

// TestChildSpecWire: the handoffs to gateway and worker processes keep
// their JSON form (a master and its children of the same build agree
// anyway, but a reload replaces the children with a new binary while the
// old master stays): every bus-credential field under its old name, in
// its old place.
func TestChildSpecWire(t *testing.T) {
	tests := []struct {
		name string
		spec any
		want string
	}{
		{
			name: "gateway",
			spec: gatewaySpec{
				busCreds: busCreds{
					URL: "nats://127.0.0.1:1", User: "u", Password: "p", Token: "t",
					NKeySeedFile: "/n", CredsFile: "/c", CAFile: "/ca", CertFile: "/cert", KeyFile: "/key",
				},
				InsecureNoAuth: true, Role: bus.RoleGateway, Config: "prefix: gw\n",
			},
			want: `{"url":"nats://127.0.0.1:1","user":"u","password":"p","token":"t","nkey_seed_file":"/n",` +
				`"creds_file":"/c","ca_file":"/ca","cert_file":"/cert","key_file":"/key","insecure_no_auth":true,` +
				`"role":"gateway","config":"prefix: gw\n"}`,
		},
		{
			name: "gateway, no credentials",
			spec: gatewaySpec{busCreds: busCreds{URL: "nats://h:2"}, Role: bus.RoleGateway},
			want: `{"url":"nats://h:2","role":"gateway","config":""}`,
		},
		{
			name: "worker",
			spec: childSpec{
				busCreds: busCreds{
					URL: "nats://127.0.0.1:1", User: "u", Password: "p", Token: "t",
					NKeySeedFile: "/n", CredsFile: "/c", CAFile: "/ca", CertFile: "/cert", KeyFile: "/key",
				},
				InboxPrefix: "gw.inbox.w", Prefix: "gw", Concurrency: 7, QueryTimeout: time.Second,
				ReqTimeout: 2 * time.Second, WorkerIDPrefix: "m1", Kind: "task", NoTasks: true,
				TaskConcurrency: 3, TaskMaxAttempts: 4, TaskMaxPayload: 5,
			},
			want: `{"url":"nats://127.0.0.1:1","user":"u","password":"p","token":"t","nkey_seed_file":"/n",` +
				`"creds_file":"/c","ca_file":"/ca","cert_file":"/cert","key_file":"/key","inbox_prefix":"gw.inbox.w",` +
				`"prefix":"gw","concurrency":7,"query_timeout":1000000000,"request_timeout":2000000000,"log":{`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := json.Marshal(tt.spec)
			if err != nil {
				t.Fatal(err)
			}
			got := string(b)
			if len(got) > len(tt.want) && tt.want[len(tt.want)-1] == '{' {
				got = got[:len(tt.want)] // the log settings are LogConfig's own
			}
			if got != tt.want {
				t.Fatalf("encoded\n%s\nwant\n%s", b, tt.want)
			}
		})
	}
}
