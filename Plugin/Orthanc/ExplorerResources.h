#pragma once

#include <orthanc/OrthancCPlugin.h>

#include <string>

namespace AzureDicom
{
// Copies the embedded file `name` (its path under Resources/Embedded, e.g. "ui/index.html") into
// content; returns false when no such file was embedded. The build generates its definition
// (Resources/CMake/WriteEmbeddedResources.cmake).
bool GetEmbeddedResource(std::string& content, const std::string& name);

// Returns the Content-Type of a served file from its extension, "application/octet-stream" for
// an unknown one.
const char* GetContentType(const std::string& name);

// Registers the dashboard's GET routes under /azure-dicom/ui, adds the plugin's script to Orthanc
// Explorer (/app/explorer.html) and makes the dashboard the page that the explorer's plugin list
// opens.
void RegisterExplorerResources(OrthancPluginContext* orthanc);
}  // namespace AzureDicom
