package main

import (
	"strings"
	"testing"
)

// A bad --mirror-class-share stops ferry edge before it starts, with a
// usage error naming the flag and the value. (Were it not checked, the
// node would start and stop at once on its Kafka address: exit 1.)
func TestEdgeRefusesBadClassShare(t *testing.T) {
	for _, tc := range []struct{ value, want string }{
		{"2=20%,1=90%", `--mirror-class-share: class shares "2=20%,1=90%": the shares add up to 110%`},
		{"12=5%", `--mirror-class-share: class share "12=5%": class 12: want a class from 0 to 9`},
		{"2=half", `--mirror-class-share: class share "2=half": "half" is not a whole percent`},
	} {
		code, _, errOut := ferry(t, "edge", "--data-dir", t.TempDir(), "--kafka-addr", "127.0.0.1:bad", "--mirror-class-share", tc.value)
		if code != 2 || !strings.Contains(errOut, tc.want) {
			t.Errorf("--mirror-class-share %s: exit %d, want 2; %q does not contain %q", tc.value, code, errOut, tc.want)
		}
	}
}
