# cmake -DPLUGIN=x.so -DIN=schema.yaml -DOUT=stamped.yaml -P stamp_schema.cmake
# Writes the bundled schema with plugin.sha256 set to the digest of the
# plugin this build produced, and each "@SHA256:file@" to the digest of that
# file beside the plugin (its data migrations): the build is the reviewer of
# bundled plugins.
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
file(WRITE ${OUT} "${text}")
