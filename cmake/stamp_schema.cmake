# cmake -DPLUGIN=x.so -DIN=schema.yaml -DOUT=stamped.yaml -P stamp_schema.cmake
# Writes the bundled schema with plugin.sha256 set to the digest of the
# plugin this build produced: the build is the reviewer of bundled plugins.
file(SHA256 ${PLUGIN} digest)
file(READ ${IN} text)
string(REPLACE "@SHA256@" "${digest}" text "${text}")
file(WRITE ${OUT} "${text}")
