package kafka

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"strings"
)

// The server side of SCRAM (RFC 5802, RFC 7677) as Kafka's broker speaks
// it. It is written here rather than taken from github.com/xdg-go/scram's
// server (the module still derives the stored credentials, in devices, and
// plays the client in tests) because Kafka's broker accepts a client-final
// nonce that merely ends with the server's (ScramSaslServer: endsWith), and
// librdkafka relies on it: it sends its own nonce in front of the combined
// one. xdg-go's server demands equality and refuses every librdkafka (kcat)
// client. The proof is verified over the client-final message as received,
// as Kafka does, so accepting the longer nonce weakens nothing: the client
// still proves it knows the key over the server's fresh nonce.
//
// Not supported, as in Kafka: channel binding (gs2 flag "p"), mandatory
// extensions ("m="), delegation tokens ("tokenauth=true").

// scramConversation is one SCRAM exchange on the server side.
type scramConversation struct {
	newHash func() hash.Hash
	lookup  func(user string) (cred SCRAMCredential, known bool)

	step        int // 0: expects client-first; 1: expects client-final; 2: done
	user, authz string
	gs2Header   string
	clientFirst string // client-first-message-bare
	serverFirst string
	nonce       string // client nonce + server nonce
	cred        SCRAMCredential
	known       bool // cred is the user's, not a decoy
}

var errSCRAMMessage = errors.New("malformed SCRAM message")

// next takes the client's message and returns the server's; done is true
// once the client's proof verified.
func (sc *scramConversation) next(msg string) (answer string, done bool, err error) {
	switch sc.step {
	case 0:
		sc.step = 1
		return sc.first(msg)
	case 1:
		sc.step = 2
		return sc.final(msg)
	}
	return "", false, errors.New("SCRAM exchange already over")
}

func (sc *scramConversation) first(msg string) (string, bool, error) {
	// gs2-header: cbind-flag "," [ "a=" authzid ] ","
	flag, rest, ok := strings.Cut(msg, ",")
	if !ok || (flag != "n" && flag != "y") {
		return "", false, fmt.Errorf("%w: channel binding %q is not supported", errSCRAMMessage, flag)
	}
	authz, bare, ok := strings.Cut(rest, ",")
	if !ok {
		return "", false, errSCRAMMessage
	}
	if authz != "" {
		z, ok := strings.CutPrefix(authz, "a=")
		if !ok {
			return "", false, errSCRAMMessage
		}
		if sc.authz, ok = scramDecodeName(z); !ok {
			return "", false, errSCRAMMessage
		}
	}
	sc.gs2Header = flag + "," + authz + ","
	attrs := strings.Split(bare, ",")
	if len(attrs) < 2 {
		return "", false, errSCRAMMessage
	}
	name, ok := strings.CutPrefix(attrs[0], "n=")
	if !ok {
		return "", false, fmt.Errorf("%w: no user name (or a mandatory extension)", errSCRAMMessage)
	}
	if sc.user, ok = scramDecodeName(name); !ok || sc.user == "" {
		return "", false, fmt.Errorf("%w: user name encoding", errSCRAMMessage)
	}
	cnonce, ok := strings.CutPrefix(attrs[1], "r=")
	if !ok || cnonce == "" || !printable(cnonce) {
		return "", false, fmt.Errorf("%w: nonce", errSCRAMMessage)
	}
	for _, ext := range attrs[2:] {
		if strings.HasPrefix(ext, "tokenauth=") {
			return "", false, errors.New("delegation tokens are not supported")
		}
	}
	sc.clientFirst = bare
	sc.cred, sc.known = sc.lookup(sc.user)
	raw := make([]byte, 24)
	rand.Read(raw)
	sc.nonce = cnonce + base64.RawURLEncoding.EncodeToString(raw)
	sc.serverFirst = "r=" + sc.nonce + ",s=" + base64.StdEncoding.EncodeToString(sc.cred.Salt) + ",i=" + strconv.Itoa(sc.cred.Iterations)
	return sc.serverFirst, false, nil
}

func (sc *scramConversation) final(msg string) (string, bool, error) {
	withoutProof, proofB64, ok := strings.Cut(msg, ",p=")
	if !ok || strings.Contains(proofB64, ",") {
		return "", false, fmt.Errorf("%w: the proof must come last", errSCRAMMessage)
	}
	attrs := strings.Split(withoutProof, ",")
	if len(attrs) < 2 {
		return "", false, errSCRAMMessage
	}
	cbind, ok := strings.CutPrefix(attrs[0], "c=")
	if !ok {
		return "", false, errSCRAMMessage
	}
	if cb, err := base64.StdEncoding.DecodeString(cbind); err != nil || string(cb) != sc.gs2Header {
		return "", false, fmt.Errorf("%w: channel binding does not repeat the gs2 header", errSCRAMMessage)
	}
	nonce, ok := strings.CutPrefix(attrs[1], "r=")
	if !ok || !strings.HasSuffix(nonce, sc.nonce) { // Kafka's rule (see above)
		return "", false, fmt.Errorf("%w: nonce is not the server's", errSCRAMMessage)
	}
	proof, err := base64.StdEncoding.DecodeString(proofB64)
	size := sc.newHash().Size()
	if err != nil || len(proof) != size || len(sc.cred.StoredKey) != size {
		return "", false, fmt.Errorf("%w: proof", errSCRAMMessage)
	}
	authMessage := []byte(sc.clientFirst + "," + sc.serverFirst + "," + withoutProof)
	mac := hmac.New(sc.newHash, sc.cred.StoredKey)
	mac.Write(authMessage)
	clientKey := mac.Sum(nil)
	for i := range clientKey {
		clientKey[i] ^= proof[i]
	}
	h := sc.newHash()
	h.Write(clientKey)
	// The whole proof is checked for a decoy too (the same time), and a
	// decoy never passes, whatever its keys.
	if subtle.ConstantTimeCompare(h.Sum(nil), sc.cred.StoredKey) != 1 || !sc.known {
		return "", false, errors.New("invalid proof")
	}
	mac = hmac.New(sc.newHash, sc.cred.ServerKey)
	mac.Write(authMessage)
	return "v=" + base64.StdEncoding.EncodeToString(mac.Sum(nil)), true, nil
}

// scramDecodeName undoes RFC 5802's escaping of ',' (=2C) and '=' (=3D);
// any other '=' is an encoding error.
func scramDecodeName(s string) (string, bool) {
	if !strings.Contains(s, "=") {
		return s, true
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '=' {
			b.WriteByte(s[i])
			continue
		}
		switch {
		case strings.HasPrefix(s[i:], "=2C"):
			b.WriteByte(',')
		case strings.HasPrefix(s[i:], "=3D"):
			b.WriteByte('=')
		default:
			return "", false
		}
		i += 2
	}
	return b.String(), true
}

// printable: RFC 5802's printable characters (0x21-0x7e but ',').
func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e || s[i] == ',' {
			return false
		}
	}
	return true
}
