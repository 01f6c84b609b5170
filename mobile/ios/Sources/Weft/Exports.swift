// The Weft product re-exports the generated bindings: `import Weft` is enough for an app to
// use WeftNode, Event and the rest next to WeftBleRadio.
@_exported import WeftFFI
