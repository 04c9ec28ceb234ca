package fleet

import (
	"bytes"
	"encoding/csv"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Reading is one line of the room-climate data: temperature (°C), relative
// humidity (%) and two light sensors.
type Reading struct {
	Temp, Hum, Light1, Light2 float64
}

// Climate holds the readings of each sensor node of the room-climate data
// (testbed/testdata/room-climate*), in recorded order: real series that
// vary slowly, a few seconds between readings.
type Climate struct {
	series [][]Reading
}

// LoadClimate reads every location_X-*.csv in dir. Each line is
// `EID, AbsT(ms), RelT(s), NID, Temp, RelH, L1, L2, ...`; lines are grouped
// by location and node id into series.
func LoadClimate(dir string) (*Climate, error) {
	files, err := filepath.Glob(filepath.Join(dir, "location_*.csv"))
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("fleet: no location_*.csv in %s", dir)
	}
	sort.Strings(files)
	byNode := map[string][]Reading{}
	var order []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		r := csv.NewReader(bytes.NewReader(b))
		r.TrimLeadingSpace = true
		r.FieldsPerRecord = -1
		recs, err := r.ReadAll()
		if err != nil {
			return nil, fmt.Errorf("fleet: %s: %w", f, err)
		}
		loc := strings.SplitN(filepath.Base(f), "-", 2)[0]
		for i, rec := range recs {
			if len(rec) < 8 {
				return nil, fmt.Errorf("fleet: %s:%d: %d fields, want at least 8", f, i+1, len(rec))
			}
			var v [4]float64
			for j := range v {
				if v[j], err = strconv.ParseFloat(rec[4+j], 64); err != nil {
					return nil, fmt.Errorf("fleet: %s:%d: %w", f, i+1, err)
				}
			}
			node := loc + "/" + rec[3]
			if _, ok := byNode[node]; !ok {
				order = append(order, node)
			}
			byNode[node] = append(byNode[node], Reading{Temp: v[0], Hum: v[1], Light1: v[2], Light2: v[3]})
		}
	}
	c := &Climate{}
	for _, n := range order {
		c.series = append(c.series, byNode[n])
	}
	return c, nil
}

// Readings is the number of readings in all.
func (c *Climate) Readings() int {
	n := 0
	for _, s := range c.series {
		n += len(s)
	}
	return n
}

// sensor is one device's sensor: a series of real readings replayed from
// a point that depends on the device, with the device's own calibration
// offsets, a little noise, a battery that drains, and now and then an
// alarm: the temperature climbs well above the series for a few readings.
type sensor struct {
	series       []Reading
	pos          int
	dTemp, dHum  float64
	battery      float64
	alarmP       float64 // probability that a reading starts an alarm
	alarmLeft    int     // readings of the current alarm still to come
	alarmReading int     // readings of the current alarm so far
	rnd          *rand.Rand
}

func (c *Climate) sensor(device int, alarmP float64, rnd *rand.Rand) *sensor {
	s := c.series[device%len(c.series)]
	return &sensor{
		series:  s,
		pos:     (device * 7919) % len(s),
		dTemp:   rnd.Float64()*0.8 - 0.4,
		dHum:    rnd.Float64()*3 - 1.5,
		battery: 3.3 + rnd.Float64()*0.9,
		alarmP:  alarmP,
		rnd:     rnd,
	}
}

// next returns the next reading, and the alarm it raises ("" for none).
// Alarms last 5 readings.
func (s *sensor) next() (Reading, string) {
	r := s.series[s.pos]
	s.pos = (s.pos + 1) % len(s.series)
	r.Temp += s.dTemp + (s.rnd.Float64()-0.5)*0.04
	r.Hum += s.dHum + (s.rnd.Float64()-0.5)*0.2
	s.battery -= 0.00002
	if s.alarmLeft == 0 && s.alarmP > 0 && s.rnd.Float64() < s.alarmP {
		s.alarmLeft, s.alarmReading = 5, 0
	}
	if s.alarmLeft == 0 {
		return r, ""
	}
	s.alarmLeft--
	s.alarmReading++
	r.Temp += 2.5 * float64(s.alarmReading)
	return r, "temperature_high"
}

// appendPayload appends a device's JSON payload, e.g.
// {"device":"gw1-d0007","seq":42,"sent_us":1718000000123456,"temperature":20.61,"humidity":41.87,"light1":185.71,"light2":492.2,"battery":3.612}
// and, during an alarm, "alarm":"temperature_high".
func appendPayload(b []byte, device string, seq, sentUS int64, r Reading, battery float64, alarm string) []byte {
	b = fmt.Appendf(b, `{"device":%q,"seq":%d,"sent_us":%d,"temperature":%.2f,"humidity":%.2f,"light1":%.2f,"light2":%.1f,"battery":%.3f`,
		device, seq, sentUS, r.Temp, r.Hum, r.Light1, r.Light2, battery)
	if alarm != "" {
		b = fmt.Appendf(b, `,"alarm":%q`, alarm)
	}
	return append(b, '}')
}
