package kafka

import (
	"runtime"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// FuzzRequest feeds arbitrary frames through request decoding: it must never
// panic, a frame of at most 64 KiB must cost at most decodeBudget of CPU to
// decode or refuse (with SASL pending too), and a frame that decodes must
// decode again identically after being re-encoded by kmsg. The seed corpus
// holds requests as real clients encode them: frames captured from franz-go
// and kcat by TestCaptureClientRequests (testdata/fuzz/FuzzRequest/client-*),
// and hostile ones (hostile-*, kmsg-*: counts that looped in kmsg v1.15.0).
func FuzzRequest(f *testing.F) {
	for _, req := range []kmsg.Request{
		kmsg.NewPtrApiVersionsRequest(), kmsg.NewPtrMetadataRequest(), kmsg.NewPtrFetchRequest(),
		kmsg.NewPtrProduceRequest(), kmsg.NewPtrListOffsetsRequest(), kmsg.NewPtrCreateTopicsRequest(),
	} {
		for _, v := range []int16{handlers[req.Key()].min, handlers[req.Key()].max} {
			req.SetVersion(v)
			f.Add(encodeRequest(req, 1, "seed"))
		}
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		if len(frame) > maxHostileFrame {
			return
		}
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		began := threadCPU()
		decodeRequest(frame, preAuthAPI)
		rq, req, _, _, err := decodeRequest(frame, nil)
		if took := threadCPU() - began; took > decodeBudget {
			t.Fatalf("decoding a frame of %d bytes took %v of CPU, over %v", len(frame), took, decodeBudget)
		}
		if err != nil || req == nil {
			return
		}
		again, req2, _, _, err := decodeRequest(encodeRequest(req, rq.corr, rq.clientID), nil)
		if err != nil || again.key != rq.key || again.version != rq.version || req2 == nil {
			t.Fatalf("re-encoded request does not decode: %v", err)
		}
	})
}

// encodeRequest frames a request as a client does (without the size prefix).
func encodeRequest(req kmsg.Request, corr int32, clientID string) []byte {
	b := []byte{byte(req.Key() >> 8), byte(req.Key()), byte(req.GetVersion() >> 8), byte(req.GetVersion())}
	b = append(b, byte(corr>>24), byte(corr>>16), byte(corr>>8), byte(corr))
	b = append(b, byte(len(clientID)>>8), byte(len(clientID)))
	b = append(b, clientID...)
	if req.IsFlexible() {
		b = append(b, 0)
	}
	return req.AppendTo(b)
}
