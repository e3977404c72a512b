#include "Sync/InstanceFiles.h"

#include "Common/Exception.h"
#include "Common/Md5.h"

#include <cctype>
#include <cstring>

namespace AzureDicom
{
namespace
{
constexpr size_t MD5_HEX_LENGTH = 32;
constexpr size_t DICOM_PREAMBLE_BYTES = 128;
const char DICOM_PREFIX[] = "DICM";


bool StartsLikeDicomFile(const IBuffer& file)
{
  const size_t prefixLength = sizeof(DICOM_PREFIX) - 1;
  return file.GetSize() >= DICOM_PREAMBLE_BYTES + prefixLength &&
         std::memcmp(file.GetData() + DICOM_PREAMBLE_BYTES, DICOM_PREFIX, prefixLength) == 0;
}


bool IsMd5(const std::string& text)
{
  if (text.size() != MD5_HEX_LENGTH)
  {
    return false;
  }
  for (char c : text)
  {
    if (!std::isxdigit(static_cast<unsigned char>(c)) ||
        std::isupper(static_cast<unsigned char>(c)))
    {
      return false;
    }
  }
  return true;
}


// Returns the digest that Orthanc stored for the file, or "" when it has none. Orthanc 1.10.1
// returns 404 for an attachment stored without MD5 (StoreMD5ForAttachments false).
std::string ReadStoredMd5(IOrthancGateway& orthanc, const std::string& orthancId)
{
  std::string answer;
  try
  {
    if (!orthanc.GetBinary(answer, "/instances/" + orthancId + "/attachments/dicom/md5"))
    {
      return "";
    }
  }
  catch (const Exception&)
  {
    // The digest is only an optimization, so a failed request falls back to hashing the file.
    return "";
  }

  while (!answer.empty() && std::isspace(static_cast<unsigned char>(answer.back())))
  {
    answer.pop_back();
  }
  return IsMd5(answer) ? answer : "";
}


std::string HashBytes(const char* data, size_t size)
{
  Md5 digest;
  digest.Update(data, size);
  return digest.Finish();
}
}  // namespace


std::string GetInstanceMd5(IOrthancGateway& orthanc, const std::string& orthancId,
                           const char* data, size_t size)
{
  if (size >= MD5_FROM_ORTHANC_MIN_BYTES)
  {
    const std::string stored = ReadStoredMd5(orthanc, orthancId);
    if (!stored.empty())
    {
      return stored;
    }
  }
  return HashBytes(data, size);
}


std::string GetInstanceMd5(IOrthancGateway& orthanc, const std::string& orthancId)
{
  const std::string stored = ReadStoredMd5(orthanc, orthancId);
  if (!stored.empty())
  {
    return stored;
  }

  Md5 digest;
  if (!orthanc.ReadBinary("/instances/" + orthancId + "/file",
                          [&digest](const char* data, size_t size) { digest.Update(data, size); }))
  {
    return "";
  }
  return digest.Finish();
}


std::unique_ptr<IBuffer> InstanceFileReader::Read(const std::string& orthancId,
                                                  uint64_t expectedSize)
{
  const std::string instance = "/instances/" + orthancId;
  if (expectedSize > 0 && ReadsStoredAttachments())
  {
    std::unique_ptr<IBuffer> stored =
        orthanc_.ReadBuffer(instance + "/attachments/dicom/compressed-data");
    if (!stored)
    {
      return nullptr;
    }
    if (stored->GetSize() == expectedSize && StartsLikeDicomFile(*stored))
    {
      storedSizeMismatches_ = 0;
      return stored;
    }
    if (stored->GetSize() != expectedSize)
    {
      storedSizeMismatches_++;
    }
  }
  return orthanc_.ReadBuffer(instance + "/file");
}
}  // namespace AzureDicom
