package state

import (
	"encoding/binary"
	"fmt"
	"strconv"

	"github.com/loyalty-scoring/loyalty/pkg/scoring"
)

// A customer is stored as one Redis string (the compact state): a magic byte, the customer's
// version as a uvarint, then the state's binary encoding (scoring.State.AppendBinary). The
// version is what the write scripts compare and set, so a write is one GETRANGE of the head
// and one SET, with no DEL and no hash rewrite.
//
// Two other shapes can be found under a customer key, both hashes with the version in field
// "_v": a state in the former layout of small text fields (scoring.State.MarshalFields), which
// the next write of the customer, or MigrateHashes, replaces with the compact value; and a
// quarantine tombstone (QuarantinedField).

// valueMagic starts every compact customer value. It is not valid text, so a value written by
// hand or by another program is told apart.
const valueMagic = 0xC5

// maxVersionLen is the longest uvarint version the scripts read (GETRANGE 0..maxVersionLen).
const maxVersionLen = 10

// versionLua is the scripts' reader of a customer's version: "0" for no key, the "_v" field of
// a hash, the uvarint after valueMagic of a compact value, and "?" for anything else (which
// never equals an expected version: the customer was read as unreadable and is quarantined).
const versionLua = `
local function customer_version(key)
  local head = redis.pcall('GETRANGE', key, '0', '10') -- strings: a Lua number is printed with %.14g on every call
  if type(head) == 'table' then
    local t = redis.call('TYPE', key).ok
    if t == 'hash' then
      return redis.call('HGET', key, '_v') or '0'
    end
    return '?'
  end
  if head == '' then
    return '0'
  end
  if string.byte(head, 1) ~= 0xC5 then
    return '?'
  end
  local v, mul = 0, 1
  for i = 2, #head do
    local c = string.byte(head, i)
    v = v + (c % 128) * mul
    if c < 128 then
      return string.format('%d', v)
    end
    mul = mul * 128
  end
  return '?'
end
`

// Current is a customer's stored value as the store read it, for a ComputeFunc.
type Current struct {
	// Value is the customer's compact state (scoring.State's binary encoding, without the
	// store's header); nil when the key holds no compact value.
	Value []byte
	// Fields is the key's hash without the version: a state in the former layout, or a
	// quarantine tombstone (QuarantinedField, QuarantineMarkField). Nil when not a hash.
	Fields map[string]string
	// Unreadable, when not empty, says what the key holds instead of a state.
	Unreadable string
}

// Empty reports whether the customer has nothing stored.
func (c Current) Empty() bool { return c.Value == nil && c.Fields == nil && c.Unreadable == "" }

// Tombstone returns the reason a customer was quarantined, when the key holds its tombstone.
func (c Current) Tombstone() (string, bool) {
	reason, ok := c.Fields[QuarantinedField]
	return reason, ok
}

// State decodes the stored state: the compact value, or a hash in the former layout. An
// unreadable value is scoring.ErrCorruptState; a tombstone is not a state (check Tombstone
// first) and is refused the same way.
func (c Current) State() (scoring.State, error) {
	switch {
	case c.Unreadable != "":
		return scoring.State{}, fmt.Errorf("%w: %s", scoring.ErrCorruptState, c.Unreadable)
	case c.Value != nil:
		var st scoring.State
		if err := st.UnmarshalBinary(c.Value); err != nil {
			return scoring.State{}, err
		}
		return st, nil
	}
	return scoring.UnmarshalFields(c.Fields)
}

// View is the stored value as text fields, for operators and tools (loyaltyctl customer, the
// console, diffs): a compact value decoded and shown in the former field layout, a hash as
// it is, an unreadable value as UnreadableField. It is not how the state is stored.
func (c Current) View() map[string]string {
	switch {
	case c.Unreadable != "":
		return map[string]string{UnreadableField: c.Unreadable}
	case c.Value != nil:
		var st scoring.State
		if err := st.UnmarshalBinary(c.Value); err != nil {
			return map[string]string{UnreadableField: err.Error()}
		}
		return st.MarshalFields()
	}
	return c.Fields
}

// encodeValue is the stored string of a compact state at version.
func encodeValue(version uint64, payload []byte) []byte {
	return appendValue(make([]byte, 0, 1+binary.MaxVarintLen64+len(payload)), version, payload)
}

// appendValue appends the stored string of a compact state at version to dst.
func appendValue(dst []byte, version uint64, payload []byte) []byte {
	dst = append(dst, valueMagic)
	dst = binary.AppendUvarint(dst, version)
	return append(dst, payload...)
}

// decodeValue splits a stored string into its version and compact state; ok is false for a
// string that is not a compact value.
func decodeValue(raw []byte) (version uint64, payload []byte, ok bool) {
	if len(raw) < 2 || raw[0] != valueMagic {
		return 0, nil, false
	}
	v, n := binary.Uvarint(raw[1:])
	if n <= 0 || n > maxVersionLen {
		return 0, nil, false
	}
	payload = raw[1+n:]
	if payload == nil {
		payload = []byte{}
	}
	return v, payload, true
}

// currentOf builds a Current from a hash read with HGETALL, and its version.
func currentOfHash(fields map[string]string) (Current, uint64) {
	if len(fields) == 0 {
		return Current{}, 0
	}
	v := fields[versionField]
	delete(fields, versionField)
	version, err := strconv.ParseUint(v, 10, 64)
	if err != nil && v != "" {
		return Current{Unreadable: fmt.Sprintf("a hash with version %q", v)}, 0
	}
	return Current{Fields: fields}, version
}
