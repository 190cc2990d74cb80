package server

// AWS's error texts that have no other home: the one table of Kinesis
// wording the server renders for conditions found outside the engine.
// Texts were recorded from AWS (kinesalite's conformance tests, and
// newer recordings where AWS changed them).

// errAccessDenied is AWS's __type for requests it cannot map to an
// operation.
const errAccessDenied = "AccessDeniedException"
