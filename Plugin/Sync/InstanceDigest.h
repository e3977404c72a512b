#pragma once

#include "Sync/OrthancGateway.h"

#include <cstddef>
#include <string>

namespace AzureDicom
{
// Files from this size on take their MD5 from Orthanc, which stored it with the attachment,
// because one REST call is estimated to cost less than hashing 64 KB. Smaller files are hashed.
constexpr size_t MD5_FROM_ORTHANC_MIN_BYTES = 64 * 1024;

// Returns the MD5 (lower-case hexadecimal) of an instance's DICOM file, whose bytes the caller
// holds. It reads the digest that Orthanc stored for the attachment when the file is large, and
// hashes the bytes when the file is small or when Orthanc has no digest for it
// (StoreMD5ForAttachments false).
std::string GetInstanceMd5(IOrthancGateway& orthanc, const std::string& orthancId,
                           const char* data, size_t size);

// Returns the MD5 of an instance's DICOM file, reading the file only when Orthanc has no digest
// for it, or "" when the instance does not exist.
std::string GetInstanceMd5(IOrthancGateway& orthanc, const std::string& orthancId);
}  // namespace AzureDicom
