package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/spf13/pflag"

	flog "ferry/log"
)

func logCommand() *command {
	return &command{
		name:    "log",
		summary: "inspect segment files: dump batches and records, verify CRCs and offsets; cut a damaged partition",
		example: "ferry log verify ./data/log\n  ferry log dump ./data/log/telemetry-0/00000000000000000000.log --records\n  ferry log truncate --data-dir ./data --topic telemetry --partition 0 --offset 1234",
		subs: []*command{
			{
				name: "dump", args: "PATH", summary: "print the batches (and records) of segment files",
				example: "ferry log dump ./data/log/telemetry-0 --records --json",
				flags: func(fs *pflag.FlagSet) func([]string, io.Writer) error {
					asJSON := fs.Bool("json", false, "print JSON")
					records := fs.Bool("records", false, "decode and print every record")
					return func(args []string, out io.Writer) error {
						if err := exactArgs(args, "PATH"); err != nil {
							return err
						}
						return dumpSegments(args[0], *records, *asJSON, out)
					}
				},
			},
			{
				name: "verify", args: "PATH", summary: "check every batch's framing, CRC-32C and offsets; exit 1 on damage",
				example: "ferry log verify ./data/log --json",
				flags: func(fs *pflag.FlagSet) func([]string, io.Writer) error {
					asJSON := fs.Bool("json", false, "print JSON")
					return func(args []string, out io.Writer) error {
						if err := exactArgs(args, "PATH"); err != nil {
							return err
						}
						return verifySegments(args[0], *asJSON, out)
					}
				},
			},
			logTruncateCommand(),
		},
	}
}

// segmentFiles finds the segment files at path: the file itself, or every
// <20 digits>.log below a directory, sorted.
func segmentFiles(path string) ([]string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !st.IsDir() {
		return []string{path}, nil
	}
	var files []string
	err = filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if !d.IsDir() && strings.HasSuffix(name, ".log") && len(name) == 24 {
			files = append(files, p)
		}
		return nil
	})
	sort.Strings(files)
	if err == nil && len(files) == 0 {
		err = fmt.Errorf("no segment files under %s", path)
	}
	return files, err
}

type batchJSON struct {
	Position      int64        `json:"position"`
	BaseOffset    int64        `json:"base_offset"`
	LastOffset    int64        `json:"last_offset"`
	Records       int32        `json:"records"`
	Bytes         int32        `json:"bytes"`
	FirstTs       int64        `json:"first_timestamp"`
	MaxTs         int64        `json:"max_timestamp"`
	Codec         string       `json:"codec"`
	ProducerID    int64        `json:"producer_id"`
	ProducerEpoch int16        `json:"producer_epoch"`
	BaseSequence  int32        `json:"base_sequence"`
	CRCOK         bool         `json:"crc_ok"`
	RecordList    []recordJSON `json:"record_list,omitempty"`
}

type recordJSON struct {
	Offset    int64             `json:"offset"`
	Timestamp int64             `json:"timestamp"`
	Key       *string           `json:"key"`
	Value     *string           `json:"value"`
	Headers   map[string]string `json:"headers,omitempty"`
}

// segmentJSON is one segment file in `log verify --json` and `log dump
// --json`: the scan's summary in the key style of every other command's
// JSON (snake_case), which log.ScanSummary, a Go type with no JSON of its
// own, did not have.
type segmentJSON struct {
	Path           string `json:"path"`
	BaseOffset     int64  `json:"base_offset"`
	Size           int64  `json:"size"`
	ValidBytes     int64  `json:"valid_bytes"`
	Batches        int    `json:"batches"`
	Records        int64  `json:"records"`
	NextOffset     int64  `json:"next_offset"`
	FirstTimestamp int64  `json:"first_timestamp"`
	MaxTimestamp   int64  `json:"max_timestamp"`
	OK             bool   `json:"ok"`
	Problem        string `json:"problem,omitempty"`
	ProblemTorn    bool   `json:"problem_torn,omitempty"`
}

func segmentView(s flog.ScanSummary) segmentJSON {
	return segmentJSON{Path: s.Path, BaseOffset: s.BaseOffset, Size: s.Size, ValidBytes: s.ValidBytes, Batches: s.Batches,
		Records: s.Records, NextOffset: s.NextOffset, FirstTimestamp: s.FirstTs, MaxTimestamp: s.MaxTs, OK: s.OK(),
		Problem: s.Problem, ProblemTorn: s.ProblemTorn}
}

// fileJSON is a segment file in `log dump --json`: its summary and its
// batches (whose list replaces the summary's count).
type fileJSON struct {
	segmentJSON
	Batches []batchJSON `json:"batches,omitempty"`
}

var codecs = []string{"none", "gzip", "snappy", "lz4", "zstd"}

func codecName(c int8) string {
	if int(c) < len(codecs) && c >= 0 {
		return codecs[c]
	}
	return fmt.Sprintf("unknown(%d)", c)
}

func strPtr(b []byte) *string {
	if b == nil {
		return nil
	}
	s := string(b)
	return &s
}

func dumpSegments(path string, records, asJSON bool, out io.Writer) error {
	files, err := segmentFiles(path)
	if err != nil {
		return err
	}
	var all []fileJSON
	for _, file := range files {
		f, err := os.Open(file)
		if err != nil {
			return err
		}
		var fj fileJSON
		var decodeErr error
		sum, err := flog.ScanSegmentFile(file, func(b flog.ScannedBatch) bool {
			h := b.Header
			bj := batchJSON{
				Position: b.Position, BaseOffset: h.BaseOffset, LastOffset: h.LastOffset(), Records: h.NumRecords,
				Bytes: h.Length, FirstTs: h.FirstTimestamp, MaxTs: h.MaxTimestamp, Codec: codecName(h.Codec()),
				ProducerID: h.ProducerID, ProducerEpoch: h.ProducerEpoch, BaseSequence: h.BaseSequence, CRCOK: true,
			}
			if records {
				raw := make([]byte, h.Length)
				if _, decodeErr = f.ReadAt(raw, b.Position); decodeErr != nil {
					return false
				}
				_, recs, err := flog.DecodeRecords(raw)
				if err != nil {
					decodeErr = err
					return false
				}
				for _, r := range recs {
					rj := recordJSON{Offset: r.Offset, Timestamp: r.Timestamp, Key: strPtr(r.Key), Value: strPtr(r.Value)}
					for _, hd := range r.Headers {
						if rj.Headers == nil {
							rj.Headers = map[string]string{}
						}
						rj.Headers[hd.Key] = string(hd.Value)
					}
					bj.RecordList = append(bj.RecordList, rj)
				}
			}
			fj.Batches = append(fj.Batches, bj)
			return true
		})
		f.Close()
		if err != nil {
			return err
		}
		fj.segmentJSON = segmentView(sum)
		if decodeErr != nil {
			return fmt.Errorf("%s: %w", file, decodeErr)
		}
		if !asJSON {
			printDump(out, fj)
		}
		all = append(all, fj)
	}
	if asJSON {
		return json.NewEncoder(out).Encode(map[string]any{"files": all})
	}
	return nil
}

func printDump(out io.Writer, fj fileJSON) {
	fmt.Fprintf(out, "%s: base offset %d, %d bytes\n", fj.Path, fj.BaseOffset, fj.Size)
	for _, b := range fj.Batches {
		fmt.Fprintf(out, "  pos=%d offsets=%d..%d records=%d bytes=%d first_ts=%d max_ts=%d codec=%s producer=%d/%d/%d crc=ok\n",
			b.Position, b.BaseOffset, b.LastOffset, b.Records, b.Bytes, b.FirstTs, b.MaxTs, b.Codec, b.ProducerID, b.ProducerEpoch, b.BaseSequence)
		for _, r := range b.RecordList {
			key, val := "null", "null"
			if r.Key != nil {
				key = fmt.Sprintf("%q", *r.Key)
			}
			if r.Value != nil {
				val = fmt.Sprintf("%q", *r.Value)
			}
			fmt.Fprintf(out, "    offset=%d ts=%d key=%s value=%s", r.Offset, r.Timestamp, key, val)
			for k, v := range r.Headers {
				fmt.Fprintf(out, " %s=%q", k, v)
			}
			fmt.Fprintln(out)
		}
	}
	if fj.Problem != "" {
		fmt.Fprintf(out, "  PROBLEM after %d valid bytes: %s\n", fj.ValidBytes, fj.Problem)
	}
}

// errDamaged is returned by verify when any file has a problem (exit 1).
var errDamaged = errors.New("damage found")

func verifySegments(path string, asJSON bool, out io.Writer) error {
	files, err := segmentFiles(path)
	if err != nil {
		return err
	}
	var sums []flog.ScanSummary
	bad := 0
	for _, file := range files {
		s, err := flog.ScanSegmentFile(file, nil)
		if err != nil {
			return err
		}
		if !s.OK() {
			bad++
		}
		sums = append(sums, s)
	}
	if asJSON {
		views := make([]segmentJSON, 0, len(sums))
		for _, s := range sums {
			views = append(views, segmentView(s))
		}
		if err := json.NewEncoder(out).Encode(map[string]any{"ok": bad == 0, "files": views}); err != nil {
			return err
		}
	} else {
		for _, s := range sums {
			status := "ok"
			if !s.OK() {
				status = "DAMAGED: " + s.Problem
				if s.ProblemTorn {
					status = "torn tail (recovery will truncate it if this is the active segment): " + s.Problem
				}
			}
			fmt.Fprintf(out, "%s: %d batches, %d records, offsets %d..%d, %d/%d bytes valid: %s\n",
				s.Path, s.Batches, s.Records, s.BaseOffset, s.NextOffset-1, s.ValidBytes, s.Size, status)
		}
		fmt.Fprintf(out, "%d file(s), %d damaged\n", len(sums), bad)
	}
	if bad > 0 {
		return fmt.Errorf("%w in %d of %d segment file(s)", errDamaged, bad, len(sums))
	}
	return nil
}
