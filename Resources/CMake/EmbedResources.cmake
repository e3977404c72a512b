# Writes a C++ source that defines AzureDicom::GetEmbeddedResource(), which returns the content of
# each file under ROOT by its path relative to ROOT ("ui/index.html").
function(EmbedResources OUTPUT ROOT)
  set(FILES ${ARGN})
  add_custom_command(
    OUTPUT ${OUTPUT}
    COMMAND ${CMAKE_COMMAND} -DOUTPUT=${OUTPUT} -DROOT=${ROOT} "-DFILES=${FILES}"
            -P ${CMAKE_SOURCE_DIR}/Resources/CMake/WriteEmbeddedResources.cmake
    DEPENDS ${FILES} ${CMAKE_SOURCE_DIR}/Resources/CMake/WriteEmbeddedResources.cmake
    COMMENT "Embedding ${ROOT}")
endfunction()
