# cmake -DPLUGIN=x.so -DIN=schema.yaml -DOUT=stamped.yaml -P taskhost_stamp_schema.cmake
# Writes the bundled schema with plugin.sha256 set to the digest of the
# plugin this build produced, and each "@SHA256:file@" to the digest of that
# file beside the plugin (its data migrations): the build is the reviewer of
# bundled plugins. "@BUILD@" (in the version's build metadata) becomes the
# first 12 hex digits of the digest of the schema so stamped, so every build
# that changes a byte of the plugin or its migrations is a version of its own.
file(SHA256 ${PLUGIN} digest)
file(READ ${IN} text)
string(REPLACE "@SHA256@" "${digest}" text "${text}")
get_filename_component(dir ${PLUGIN} DIRECTORY)
string(REGEX MATCHALL "@SHA256:[A-Za-z0-9_.+/-]+@" refs "${text}")
foreach(ref IN LISTS refs)
  string(REGEX REPLACE "^@SHA256:(.*)@$" "\\1" file "${ref}")
  file(SHA256 ${dir}/${file} digest)
  string(REPLACE "${ref}" "${digest}" text "${text}")
endforeach()
string(SHA256 build "${text}")
string(SUBSTRING "${build}" 0 12 build)
string(REPLACE "@BUILD@" "${build}" text "${text}")
file(WRITE ${OUT} "${text}")
