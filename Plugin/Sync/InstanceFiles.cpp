#include "Sync/InstanceFiles.h"

#include "Common/Exception.h"
#include "Common/Md5.h"

#include <json/value.h>

#include <algorithm>
#include <cerrno>
#include <cctype>
#include <cstring>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

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


// A read-only private mapping of a whole file.
class MappedFile final : public IBuffer
{
public:
  MappedFile(void* address, size_t size) : address_(address), size_(size)
  {
  }

  ~MappedFile() override
  {
    munmap(address_, size_);
  }

  const char* GetData() const override
  {
    return static_cast<const char*>(address_);
  }

  size_t GetSize() const override
  {
    return size_;
  }

private:
  void* address_;
  size_t size_;
};


// Returns true for an attachment UUID as Orthanc makes them (8-4-4-4-12 lower-case hex), so
// that a path built from it stays inside the storage directory.
bool IsAttachmentUuid(const std::string& uuid)
{
  static const size_t dashes[] = {8, 13, 18, 23};
  if (uuid.size() != 36)
  {
    return false;
  }
  for (size_t i = 0; i < uuid.size(); i++)
  {
    const bool dash = std::find(std::begin(dashes), std::end(dashes), i) != std::end(dashes);
    const char c = uuid[i];
    if (dash ? c != '-' : !(std::isdigit(static_cast<unsigned char>(c)) || (c >= 'a' && c <= 'f')))
    {
      return false;
    }
  }
  return true;
}


// Maps the file at path if it has exactly expectedSize bytes, or returns null.
std::unique_ptr<IBuffer> MapFile(const std::string& path, uint64_t expectedSize)
{
  const int descriptor = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (descriptor < 0)
  {
    return nullptr;
  }

  struct stat status = {};
  void* address = MAP_FAILED;
  if (fstat(descriptor, &status) == 0 && S_ISREG(status.st_mode) &&
      static_cast<uint64_t>(status.st_size) == expectedSize)
  {
    address = mmap(nullptr, expectedSize, PROT_READ, MAP_PRIVATE, descriptor, 0);
  }
  close(descriptor);  // the mapping keeps the file readable, even if Orthanc deletes it

  if (address == MAP_FAILED)
  {
    return nullptr;
  }
  madvise(address, expectedSize, MADV_SEQUENTIAL);
  return std::make_unique<MappedFile>(address, expectedSize);
}


// Reads the first maxBytes of the file at path (all of it when it is smaller) if it has exactly
// expectedSize bytes, or returns false. With cachedOnly, it reads only what the page cache has
// (RWF_NOWAIT), so it waits for no disk and data may end early. It then returns whether
// anything was read.
bool ReadFileStart(std::string& data, const std::string& path, uint64_t expectedSize,
                   uint64_t maxBytes, bool cachedOnly = false)
{
  const int descriptor = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (descriptor < 0)
  {
    return false;
  }

  struct stat status = {};
  bool complete = false;
  if (fstat(descriptor, &status) == 0 && S_ISREG(status.st_mode) &&
      static_cast<uint64_t>(status.st_size) == expectedSize)
  {
    data.resize(static_cast<size_t>(std::min(expectedSize, maxBytes)));
    size_t done = 0;
    while (done < data.size())
    {
      struct iovec rest = {&data[done], data.size() - done};
      const ssize_t count = cachedOnly
                                ? preadv2(descriptor, &rest, 1, static_cast<off_t>(done), RWF_NOWAIT)
                                : read(descriptor, &data[done], data.size() - done);
      if (count < 0 && errno == EINTR)
      {
        continue;
      }
      if (count < 0 && cachedOnly && errno == EOPNOTSUPP)
      {
        cachedOnly = false;  // the file system cannot tell what is cached, so it is read
        lseek(descriptor, static_cast<off_t>(done), SEEK_SET);
        continue;
      }
      if (count <= 0)
      {
        break;  // the end of the file, an error, or (EAGAIN) the rest is not cached
      }
      done += static_cast<size_t>(count);
    }
    if (cachedOnly)
    {
      data.resize(done);
      complete = (done > 0);
    }
    else
    {
      complete = (done == data.size());
    }
  }
  close(descriptor);
  return complete;
}


// Reads the file at path if it has exactly expectedSize bytes, or returns null.
std::unique_ptr<IBuffer> ReadWholeFile(const std::string& path, uint64_t expectedSize)
{
  std::string data;
  if (!ReadFileStart(data, path, expectedSize, expectedSize))
  {
    return nullptr;
  }
  return std::make_unique<StringBuffer>(std::move(data));
}


std::string HashBytes(const char* data, size_t size)
{
  Md5 digest;
  digest.Update(data, size);
  return digest.Finish();
}


std::string GetAttachmentPath(const std::string& storageDirectory, const std::string& fileUuid)
{
  // Orthanc's default storage keeps a file at {StorageDirectory}/ab/cd/abcd....
  return storageDirectory + "/" + fileUuid.substr(0, 2) + "/" + fileUuid.substr(2, 2) + "/" +
         fileUuid;
}
}  // namespace


bool LookUpPlainAttachment(PlainAttachment& attachment, IOrthancGateway& orthanc,
                           const std::string& orthancId, bool& instanceExists)
{
  Json::Value info;
  instanceExists = orthanc.GetJson(info, "/instances/" + orthancId + "/attachments/dicom/info");

  // A compressed attachment, or one that a storage plugin keeps, is not a plain file there.
  if (!instanceExists || !info.isObject() || !info["CompressedSize"].isUInt64() ||
      !info["UncompressedSize"].isUInt64() ||
      info["CompressedSize"].asUInt64() != info["UncompressedSize"].asUInt64() ||
      !info["Uuid"].isString() || !IsAttachmentUuid(info["Uuid"].asString()))
  {
    return false;
  }
  attachment.uuid = info["Uuid"].asString();
  attachment.size = info["UncompressedSize"].asUInt64();
  const Json::Value& md5 = info["UncompressedMD5"];
  attachment.md5 = md5.isString() && IsMd5(md5.asString()) ? md5.asString() : "";
  return true;
}


std::string ReadAttachmentStart(const std::string& storageDirectory,
                                const PlainAttachment& attachment, size_t maxBytes)
{
  if (storageDirectory.empty() || !IsAttachmentUuid(attachment.uuid))
  {
    return "";
  }

  std::string data;
  if (!ReadFileStart(data, GetAttachmentPath(storageDirectory, attachment.uuid), attachment.size,
                     maxBytes, true))
  {
    return "";
  }
  return data;
}


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


std::unique_ptr<IBuffer> InstanceFileReader::ReadFromStorageAfterLookup(
    const std::string& orthancId, uint64_t expectedSize, std::string& storedMd5,
    bool& instanceExists)
{
  PlainAttachment attachment;
  if (!LookUpPlainAttachment(attachment, orthanc_, orthancId, instanceExists) ||
      attachment.size != expectedSize)
  {
    return nullptr;
  }
  std::unique_ptr<IBuffer> file = ReadFromStorage(attachment.uuid, expectedSize);
  if (file)
  {
    storedMd5 = attachment.md5;
  }
  return file;
}


std::unique_ptr<IBuffer> InstanceFileReader::ReadFromStorage(const std::string& fileUuid,
                                                             uint64_t expectedSize)
{
  const std::string path = GetAttachmentPath(storageDirectory_, fileUuid);
  std::unique_ptr<IBuffer> file = expectedSize >= DIRECT_READ_MIN_BYTES
                                      ? MapFile(path, expectedSize)
                                      : ReadWholeFile(path, expectedSize);
  return file && StartsLikeDicomFile(*file) ? std::move(file) : nullptr;
}


std::unique_ptr<IBuffer> InstanceFileReader::Read(const std::string& orthancId,
                                                  uint64_t expectedSize,
                                                  const std::string& fileUuid,
                                                  const std::string& fileMd5,
                                                  std::string* storedMd5)
{
  if (storedMd5 != nullptr)
  {
    storedMd5->clear();
  }

  if (storedFiles_ != nullptr && expectedSize > 0)
  {
    std::unique_ptr<IBuffer> cachedFile = storedFiles_->Take(orthancId, expectedSize);
    if (cachedFile)
    {
      return cachedFile;
    }
  }

  const std::string instance = "/instances/" + orthancId;
  // A large file is mapped whenever it is in the storage directory, so that it is not in
  // memory twice while Orthanc's REST API copies it.
  if (expectedSize > 0 && !storageDirectory_.empty() &&
      (ReadsStorageDirectory() || expectedSize >= DIRECT_READ_MIN_BYTES))
  {
    std::unique_ptr<IBuffer> stored;
    std::string md5;
    if (IsAttachmentUuid(fileUuid))
    {
      stored = ReadFromStorage(fileUuid, expectedSize);
      if (stored)
      {
        md5 = fileMd5;
      }
    }

    // Without the UUID, or with one that Orthanc replaced since (OverwriteInstances).
    bool instanceExists = true;
    if (!stored)
    {
      try
      {
        stored = ReadFromStorageAfterLookup(orthancId, expectedSize, md5, instanceExists);
      }
      catch (const Exception&)
      {
        // Reading the storage directory is only an optimization: the REST routes below
        // report a real failure.
        instanceExists = false;
      }
    }

    if (stored)
    {
      storageMisses_ = 0;
      if (storedMd5 != nullptr)
      {
        *storedMd5 = md5;
      }
      return stored;
    }
    if (instanceExists)
    {
      storageMisses_++;  // a deleted instance is no sign of a storage problem, so it is not counted
    }
  }

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
