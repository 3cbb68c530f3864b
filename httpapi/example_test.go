package httpapi_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gatework/gatework/httpapi"
)

// Mount the API on a server; any api.API works (here a fake standing in
// for the bus client).
func ExampleNew() {
	h, err := httpapi.New(&fakeAPI{}, httpapi.Config{Token: "s3cret"})
	if err != nil {
		panic(err)
	}
	srv := httptest.NewServer(h) // in production: http.Server{Addr: "127.0.0.1:7280", Handler: h}
	defer srv.Close()

	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/api/getClientCount", strings.NewReader(`{}`))
	req.Header.Set("Authorization", "Bearer s3cret")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Print(resp.StatusCode, " ", string(body))
	// Output: 200 {"result":12,"partial":false,"missing":[]}
}

// BenchmarkServe measures one request through the handler, in memory.
func BenchmarkServe(b *testing.B) {
	cases := []struct{ name, path, body string }{
		{"sendToUid", "sendToUid", `{"uid":"u1","uids":["u2","u3"],"message":"hello, world","without":["c1"]}`},
		{"sendToClient_base64", "sendToClient", `{"client":"00000000000000000001","message_base64":"AAECAwQFBgcICQoLDA0ODw=="}`},
		{"getClientCount", "getClientCount", ``},
		{"getClientList", "getClientList", `{"cursor":"a","limit":100}`},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			h, fake := newHandler(b, httpapi.Config{})
			fake.discard = true
			b.ReportAllocs()
			for b.Loop() {
				r := httptest.NewRequest(http.MethodPost, "/api/"+c.path, strings.NewReader(c.body))
				r.Header.Set("Authorization", "Bearer "+testToken)
				w := httptest.NewRecorder()
				h.ServeHTTP(w, r)
				if w.Code != http.StatusOK {
					b.Fatalf("status %d: %s", w.Code, w.Body)
				}
			}
		})
	}
}
