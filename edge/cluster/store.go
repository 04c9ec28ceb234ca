//go:build 386 || amd64 || arm || arm64 || ppc || ppc64 || ppc64le || s390x

package cluster

import (
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
)

// openStore opens raft's log and stable store: raft-boltdb/v2 on bbolt.
// raft-boltdb/v2 also imports the old boltdb/bolt (for its v1 migration),
// which builds only on the architectures listed above; elsewhere
// (riscv64, mips*) store_unsupported.go answers instead, and such a
// binary serves alone or as an edge but cannot join a cluster.
func openStore(path string) (raftStore, error) {
	return raftboltdb.New(raftboltdb.Options{Path: path})
}
