"""The aiortc media node: hosts calls and forwards encoded media between participants."""
