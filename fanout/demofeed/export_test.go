package demofeed

// Fixed exposes the decimal formatter to the external tests.
var Fixed = fixed
