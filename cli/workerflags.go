package cli

import "github.com/gatework/gatework/cli/workerflag"

// WorkerFlags is what a worker binary of its own reads from its flags and
// the environment: see workerflag.Flags, which a binary can import
// without linking the rest of cli (and so nats-server).
type WorkerFlags = workerflag.Flags

// DefaultWorkerURL is the NATS URL a worker binary dials when neither a
// flag nor GATEWORK_NATS_URL says otherwise (workerflag.DefaultWorkerURL).
const DefaultWorkerURL = workerflag.DefaultWorkerURL
