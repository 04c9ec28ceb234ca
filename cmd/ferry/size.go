package main

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"

	"github.com/spf13/pflag"
)

// sizeUnits are the units a size flag takes, lower-cased: SI (k, M, G,
// T: powers of 1000) and IEC (Ki, Mi, Gi, Ti: powers of 1024), with or
// without a trailing B. 64MiB is 67108864, 64MB 64000000.
var sizeUnits = map[string]float64{
	"": 1, "b": 1,
	"k": 1e3, "kb": 1e3, "m": 1e6, "mb": 1e6, "g": 1e9, "gb": 1e9, "t": 1e12, "tb": 1e12,
	"ki": 1 << 10, "kib": 1 << 10, "mi": 1 << 20, "mib": 1 << 20, "gi": 1 << 30, "gib": 1 << 30, "ti": 1 << 40, "tib": 1 << 40,
}

var sizePattern = regexp.MustCompile(`^\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*$`)

// parseSize reads a byte count: a whole number, or a number with a unit
// (64MiB, 1.5GB, 512k) that comes to a whole number of bytes, at most max.
func parseSize(s string, max uint64) (uint64, error) {
	m := sizePattern.FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("want a size in bytes, e.g. 1048576, 64MiB or 1.5GB")
	}
	unit, ok := sizeUnits[strings.ToLower(m[2])]
	if !ok {
		return 0, fmt.Errorf("unknown unit %q: want B, kB, MB, GB, TB (powers of 1000) or KiB, MiB, GiB, TiB (powers of 1024)", m[2])
	}
	if !strings.Contains(m[1], ".") {
		n, err := strconv.ParseUint(m[1], 10, 64)
		if err == nil && n <= max/uint64(unit) {
			return n * uint64(unit), nil
		}
		return 0, fmt.Errorf("%s is more than %d bytes", strings.TrimSpace(s), max)
	}
	f, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return 0, err
	}
	v := f * unit
	if v != math.Trunc(v) {
		return 0, fmt.Errorf("%s is not a whole number of bytes", strings.TrimSpace(s))
	}
	if v > float64(max) {
		return 0, fmt.Errorf("%s is more than %d bytes", strings.TrimSpace(s), max)
	}
	return uint64(v), nil
}

// sizeValue is a pflag.Value of a byte count that takes units; it prints
// plain bytes, so defaults and config check read as before.
type sizeValue[T int | int64 | uint32] struct{ p *T }

func (v sizeValue[T]) String() string { return strconv.FormatInt(int64(*v.p), 10) }
func (v sizeValue[T]) Type() string   { return "size" }

func (v sizeValue[T]) Set(s string) error {
	var zero T
	max := uint64(math.MaxInt64)
	switch any(zero).(type) {
	case int:
		max = math.MaxInt
	case uint32:
		max = math.MaxUint32
	}
	n, err := parseSize(s, max)
	if err != nil {
		return err
	}
	*v.p = T(n)
	return nil
}

// sizeFlag defines a byte-count flag that takes units (64MiB).
func sizeFlag[T int | int64 | uint32](fs *pflag.FlagSet, name string, value T, usage string) *T {
	p := new(T)
	*p = value
	fs.Var(sizeValue[T]{p}, name, usage)
	return p
}
