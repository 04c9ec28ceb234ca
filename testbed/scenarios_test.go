package testbed

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"ferry/testbed/fleet"
	"ferry/testbed/scenario"
)

// TestScenarios runs every scenario file in scenarios/ over real
// processes (see README.md, "Scenarios"), at the size FERRY_SCENARIO_SIZE
// says: reduced (the default, in `make test`) or full (`make bench`). A
// scenario fails on any acknowledged record missing at the center, any
// record there twice or out of order per key, and on its own
// expectations. FERRY_SCENARIO=name runs only that one;
// FERRY_SCENARIO_DIR=dir keeps each scenario's data and node logs in
// dir/<name>.
func TestScenarios(t *testing.T) {
	size, err := scenario.ParseSize(os.Getenv("FERRY_SCENARIO_SIZE"))
	if err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob("scenarios/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no scenario files in scenarios/: %v", err)
	}
	climateDir := "testdata/room-climate"
	if size == scenario.Full {
		climateDir = "testdata/room-climate-full"
	}
	climate, err := fleet.LoadClimate(climateDir)
	if err != nil {
		t.Fatal(err)
	}
	only := os.Getenv("FERRY_SCENARIO")
	// Reduced, the scenarios keep the CPU mostly idle (they wait on rates
	// and schedules) and run side by side: subtests started from
	// goroutines, which -parallel does not limit. At full size they run one
	// at a time, so the figures are theirs.
	var wg sync.WaitGroup
	defer wg.Wait()
	for _, f := range files {
		sc, err := scenario.Load(f)
		if err != nil {
			t.Fatal(err)
		}
		if base := strings.TrimSuffix(filepath.Base(f), ".yaml"); base != sc.Name {
			t.Fatalf("%s: name %q: a scenario is named after its file", f, sc.Name)
		}
		if only != "" && only != sc.Name {
			continue
		}
		run := func(t *testing.T) {
			bin := ferryBinary(t)
			dir := t.TempDir()
			if keep := os.Getenv("FERRY_SCENARIO_DIR"); keep != "" {
				// Data and logs kept for a look afterwards.
				dir = filepath.Join(keep, sc.Name)
				if err := os.RemoveAll(dir); err != nil {
					t.Fatal(err)
				}
			}
			rep, err := scenario.Run(context.Background(), sc, scenario.Options{
				Ferry: bin, Dir: dir, Size: size, Climate: climate, Log: &testLog{t: t}})
			if err != nil {
				t.Fatal(err)
			}
			t.Log("\n" + rep.String())
			for _, p := range rep.Problems {
				t.Error(p)
			}
		}
		if size == scenario.Full {
			t.Run(sc.Name, run)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			t.Run(sc.Name, run)
		}()
	}
}

// testLog writes each line it is given with t.Log.
type testLog struct {
	t   *testing.T
	mu  sync.Mutex
	buf []byte
}

func (w *testLog) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		w.t.Log(string(w.buf[:i]))
		w.buf = w.buf[i+1:]
	}
}
