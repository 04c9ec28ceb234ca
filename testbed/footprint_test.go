package testbed

import "testing"

func TestFootprintProcParsing(t *testing.T) {
	status := "Name:\tferry\nVmHWM:\t   15200 kB\nVmRSS:\t   15196 kB\nRssAnon:\t    3148 kB\nRssFile:\t   12048 kB\n"
	got := parseKB(status, []string{"VmRSS", "RssAnon", "RssFile"})
	if got["VmRSS"] != 15196 || got["RssAnon"] != 3148 || got["RssFile"] != 12048 || len(got) != 3 {
		t.Fatalf("parseKB = %v", got)
	}
	smaps := `00400000-00c9b000 r-xp 00000000 fd:01 123 /usr/bin/ferry
Size:               8812 kB
Rss:                6000 kB
00c9b000-0117d000 r--p 0089b000 fd:01 123 /usr/bin/ferry
Rss:                5000 kB
c000000000-c000400000 rw-p 00000000 00:00 0 
Rss:                3000 kB
7ffc52600000-7ffc52621000 rw-p 00000000 00:00 0                          [stack]
Rss:                  16 kB
7ffc52700000-7ffc52702000 r-xp 00000000 00:00 0                          [vdso]
Rss:                   0 kB
`
	m := smapsByMapping(smaps)
	want := []mappingRSS{{"/usr/bin/ferry", 11000}, {"[anon]", 3000}, {"[stack]", 16}}
	if len(m) != len(want) {
		t.Fatalf("smapsByMapping = %v, want %v", m, want)
	}
	for i := range want {
		if m[i] != want[i] {
			t.Fatalf("smapsByMapping = %v, want %v", m, want)
		}
	}
}
