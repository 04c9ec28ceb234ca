//go:build !(386 || amd64 || arm || arm64 || ppc || ppc64 || ppc64le || s390x)

package cluster

import (
	"fmt"
	"runtime"
)

// openStore: raft-boltdb/v2 does not build for this architecture (see
// store.go), so this binary cannot be a cluster's voter.
func openStore(string) (raftStore, error) {
	return nil, fmt.Errorf("cluster: this build (%s) cannot join a cluster: its raft store (hashicorp/raft-boltdb) does not build for %s; run the center's nodes on amd64, arm64 or arm", runtime.GOARCH, runtime.GOARCH)
}
