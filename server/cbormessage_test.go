package server

import (
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/stretchr/testify/require"
)

// TestCBORMessage: decoding errors are worded by their type, and no
// message names a Go type, whatever the decoder's text says.
func TestCBORMessage(t *testing.T) {
	var syn error
	var v map[string]any
	syn = cborDec.Unmarshal([]byte{0xbf, 0x61, 0x61, 0xff, 0xff}, &v) // a break code where no indefinite item is open
	require.Error(t, syn)
	var asyn *cbor.SyntaxError
	require.ErrorAs(t, syn, &asyn)

	cases := []struct {
		err  error
		want string
	}{
		{&cbor.MaxArrayElementsError{}, "a CBOR array has more than"},
		{&cbor.MaxMapPairsError{}, "a CBOR map has more than"},
		{&cbor.MaxNestedLevelError{}, "nested more than 32 levels"},
		{fmt.Errorf("decoding: %w", io.ErrUnexpectedEOF), "the body ends in the middle of a CBOR value"},
		{&cbor.ExtraneousDataError{}, "there is data after the CBOR value"},
		{&cbor.DupMapKeyError{Key: "k", Index: 3}, "duplicate key at element 3"},
		{cbor.UnacceptableDataItemError{CBORType: "map", Message: "x"}, "a CBOR map where none is allowed"},
		// Errors whose text names Go types or says nothing about the body.
		{errors.New("cbor: cannot set new value for server.putRecordInput"), "the body is not a valid request"},
		{&cbor.InvalidUnmarshalError{}, "the body is not a valid request"},
		{&cbor.WrongTagError{RegisteredType: reflect.TypeOf(time.Time{}), RegisteredTagNum: []uint64{1}, TagNum: []uint64{2}}, "the body is not a valid request"},
		{errors.New("Go struct field Data of type []uint8"), "the body is not a valid request"},
	}
	for _, c := range cases {
		got := cborMessage(c.err)
		require.Contains(t, got, c.want, "%T %v", c.err, c.err)
		require.NotContains(t, got, "Go ", "%T", c.err)
		require.NotContains(t, got, "server.", "%T", c.err)
		require.False(t, strings.HasPrefix(got, "cbor: "), got)
	}
	msg := cborMessage(syn)
	require.NotEmpty(t, msg)
	require.False(t, strings.HasPrefix(msg, "cbor: "), msg)
}
