package bus

import (
	"flag"
	"os"
)

// DefaultURL is the NATS URL a worker binary dials when neither a flag nor
// GATEWORK_NATS_URL says otherwise: the node's embedded NATS started with
// `gatework start --nats-listen 127.0.0.1:4222`.
const DefaultURL = "nats://127.0.0.1:4222"

// RegisterFlags registers on fs the flags a worker binary needs to reach
// the bus — -nats, -user, -password, -token, -nkey, -creds, -tls-ca,
// -tls-cert, -tls-key and -prefix — each defaulting to its GATEWORK_*
// environment variable (GATEWORK_NATS_URL, GATEWORK_NATS_USER, …,
// GATEWORK_PREFIX), the same names the node's configuration uses. The
// values land in o and *prefix when fs is parsed; secrets are better
// passed in the environment, since flags show in ps.
func (o *Options) RegisterFlags(fs *flag.FlagSet, prefix *string) {
	str := func(p *string, name, env, def, usage string) {
		if v := os.Getenv(env); v != "" {
			def = v
		}
		fs.StringVar(p, name, def, usage+" (env "+env+")")
	}
	str(&o.URL, "nats", "GATEWORK_NATS_URL", DefaultURL, "NATS URL of the node")
	str(&o.User, "user", "GATEWORK_NATS_USER", "", "NATS user")
	str(&o.Password, "password", "GATEWORK_NATS_PASSWORD", "", "NATS password; a flag shows in ps: prefer the environment")
	str(&o.Token, "token", "GATEWORK_NATS_TOKEN", "", "NATS token; prefer the environment")
	str(&o.NKeySeedFile, "nkey", "GATEWORK_NATS_NKEY_SEED_FILE", "", "NATS NKey seed file")
	str(&o.CredsFile, "creds", "GATEWORK_NATS_CREDS_FILE", "", "NATS credentials file")
	str(&o.CAFile, "tls-ca", "GATEWORK_NATS_TLS_CA_FILE", "", "CA file that verifies the NATS server")
	str(&o.CertFile, "tls-cert", "GATEWORK_NATS_TLS_CERT_FILE", "", "client certificate file")
	str(&o.KeyFile, "tls-key", "GATEWORK_NATS_TLS_KEY_FILE", "", "client key file")
	str(prefix, "prefix", "GATEWORK_PREFIX", DefaultPrefix, "bus subject prefix of the cluster")
}
