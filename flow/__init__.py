"""intelliflow.flow: head + codec + channel + tail as one pipeline; files and links."""
